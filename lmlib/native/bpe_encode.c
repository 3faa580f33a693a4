/* BPE encoding core of lmlib.tokenizer: pre-tokenization (GPT-2's, Llama 3's or Qwen2's pattern)
   and byte-pair merges over UTF-8.

Notable:
- The same algorithm as Tokenizer's pure-Python path, which stays the reference: pre-tokens of
  the tokenizer's pattern, then for each pre-token the lowest-ranked merge present, all its
  occurrences left to right, until none applies (with ignore_merges, a pre-token that is a token
  is that token). Ids are identical (tests/tokenizer/test_native_encode.py).
- Each pattern is a hand-written state machine over code point classes (letter, number,
  whitespace, other), taken alternative by alternative as the regex engine does. The classes
  are not compiled in: Python reads them from the `regex` module at first use and passes them
  as ranges (bpe_set_classes), with the code points that a contraction's letters match ignoring
  case (bpe_set_case_folds), so the C path sees exactly the Unicode tables that the
  pure-Python path's regex sees.
- A pre-token longer than LONG_PRETOKEN bytes (a paragraph of CJK text, which has no spaces)
  merges through a heap in O(n log n), in the same rounds as short ones (merge_long_pretoken).
- Each encoder caches pre-token bytes -> ids in an open-addressing table over two arenas; it is
  cleared when it outgrows CACHE_LIMIT entries, as the Python cache is. Not thread-safe: the
  caller serializes calls on one encoder (Tokenizer holds a lock).
- The input must be UTF-8; a malformed byte is read as a character of class "other" (Python
  always passes str.encode("utf-8"), which is well formed).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { OTHER = 0, LETTER = 1, NUMBER = 2, SPACE = 3 };
enum { PATTERN_GPT2 = 0, PATTERN_LLAMA3 = 1, PATTERN_QWEN2 = 2 };
#define MAX_CODE_POINT 0x110000
#define NO_RANK UINT32_MAX
#define CACHE_LIMIT (1u << 20)
#define CACHE_MAX_KEY 512          /* longer pre-tokens are merged every time, never cached */
#define ARENA_LIMIT (1u << 24)     /* bytes of keys, or ids, before the cache is cleared */
#define LONG_PRETOKEN 128          /* longer pre-tokens merge through a heap: O(n log n) */

#define MAX_CASE_FOLDS 64
#define NOT_A_CHARACTER UINT32_MAX

static uint8_t char_class[MAX_CODE_POINT];
static int classes_ready = 0;
/* (?i:'s|'t|...) of Llama 3 and Qwen2: the code points each letter matches ignoring case */
static uint32_t fold_code[MAX_CASE_FOLDS];
static uint8_t fold_letter[MAX_CASE_FOLDS];
static int fold_count = 0;

/* ranges: count triples (first code point, last + 1, class); code points in none are OTHER. */
int bpe_set_classes(const int32_t *ranges, int64_t count) {
    memset(char_class, OTHER, sizeof char_class);
    for (int64_t i = 0; i < count; i++) {
        int32_t first = ranges[3 * i], end = ranges[3 * i + 1], cls = ranges[3 * i + 2];
        if (first < 0 || end > MAX_CODE_POINT || first > end || cls < OTHER || cls > SPACE)
            return -1;
        memset(char_class + first, cls, (size_t)(end - first));
    }
    classes_ready = 1;
    return 0;
}

/* pairs: count pairs (code point, ASCII letter) saying which code points a letter of the
   contractions matches ignoring case, as the regex module decides ("s" matches U+017F). */
int bpe_set_case_folds(const int32_t *pairs, int64_t count) {
    if (count < 0 || count > MAX_CASE_FOLDS)
        return -1;
    for (int64_t i = 0; i < count; i++) {
        fold_code[i] = (uint32_t)pairs[2 * i];
        fold_letter[i] = (uint8_t)pairs[2 * i + 1];
    }
    fold_count = (int)count;
    return 0;
}

/* The code point at text[i] (i < n), NOT_A_CHARACTER for a malformed byte; *next is where the
   following character starts. */
static inline uint32_t code_at(const uint8_t *text, int64_t i, int64_t n, int64_t *next) {
    uint32_t b = text[i];
    *next = i + 1;
    if (b < 0x80)
        return b;
    uint32_t code;
    int length;
    if (b >= 0xC2 && b < 0xE0) {
        length = 2;
        code = b & 0x1F;
    } else if (b >= 0xE0 && b < 0xF0) {
        length = 3;
        code = b & 0x0F;
    } else if (b >= 0xF0 && b < 0xF5) {
        length = 4;
        code = b & 0x07;
    } else {
        return NOT_A_CHARACTER;
    }
    if (i + length > n)
        return NOT_A_CHARACTER;
    for (int k = 1; k < length; k++) {
        uint32_t continuation = text[i + k];
        if ((continuation & 0xC0) != 0x80)
            return NOT_A_CHARACTER;
        code = (code << 6) | (continuation & 0x3F);
    }
    *next = i + length;
    return code < MAX_CODE_POINT ? code : NOT_A_CHARACTER;
}

static inline int class_of(uint32_t code) {
    return code < MAX_CODE_POINT ? char_class[code] : OTHER;
}

/* Class of the character at text[i] (i < n); *next is where the following character starts. */
static inline int class_at(const uint8_t *text, int64_t i, int64_t n, int64_t *next) {
    if (text[i] < 0x80) {
        *next = i + 1;
        return char_class[text[i]];
    }
    return class_of(code_at(text, i, n, next));
}

static inline int64_t run_end(const uint8_t *text, int64_t i, int64_t n, int cls) {
    while (i < n) {
        int64_t next;
        if (class_at(text, i, n, &next) != cls)
            break;
        i = next;
    }
    return i;
}

/* End of the pre-token starting at i under GPT-2's pattern
   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
   taken alternative by alternative, as the regex engine does. */
static inline int64_t pretoken_end(const uint8_t *text, int64_t i, int64_t n) {
    if (text[i] == '\'' && i + 1 < n) {
        uint8_t a = text[i + 1];
        if (a == 's' || a == 'd' || a == 'm' || a == 't')
            return i + 2;
        if (i + 2 < n) {
            uint8_t b = text[i + 2];
            if ((a == 'l' && b == 'l') || (a == 'v' && b == 'e') || (a == 'r' && b == 'e'))
                return i + 3;
        }
    }
    int64_t next;
    int cls = class_at(text, i, n, &next);
    if (text[i] == ' ' && next < n) {  /* " ?X+": a space joins a following non-space run */
        int64_t after;
        int following = class_at(text, next, n, &after);
        if (following != SPACE)
            return run_end(text, after, n, following);
    }
    if (cls != SPACE)
        return run_end(text, next, n, cls);
    int64_t last = i;  /* start of the run's last whitespace character */
    int64_t end = next;
    while (end < n) {
        int64_t after;
        if (class_at(text, end, n, &after) != SPACE)
            break;
        last = end;
        end = after;
    }
    if (end == n || last == i)
        return end;    /* \s+ to the end of the text, or a single whitespace character */
    return last;       /* \s+(?!\S) leaves the last one to start the next pre-token */
}

/* Whether the character at text[i] matches letter ignoring case; *next as for code_at. */
static inline int folds_to(const uint8_t *text, int64_t i, int64_t n, char letter,
                           int64_t *next) {
    if (i >= n)
        return 0;
    uint32_t code = code_at(text, i, n, next);
    for (int k = 0; k < fold_count; k++)
        if (fold_code[k] == code && fold_letter[k] == (uint8_t)letter)
            return 1;
    return 0;
}

/* End of (?i:'s|'t|'re|'ve|'m|'ll|'d) at i (text[i] is an apostrophe), or -1. */
static inline int64_t folded_contraction_end(const uint8_t *text, int64_t i, int64_t n) {
    int64_t next, after;
    static const char single[] = "stmd";
    for (int k = 0; k < 4; k++)
        if (folds_to(text, i + 1, n, single[k], &next))
            return next;
    if ((folds_to(text, i + 1, n, 'r', &next) || folds_to(text, i + 1, n, 'v', &next)) &&
        folds_to(text, next, n, 'e', &after))
        return after;
    if (folds_to(text, i + 1, n, 'l', &next) && folds_to(text, next, n, 'l', &after))
        return after;
    return -1;
}

/* End of the pre-token starting at i under Llama 3's pattern (max_digits 3) or Qwen2's (1):
   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
   |\s*[\r\n]+|\s+(?!\S)|\s+ */
static inline int64_t split_pretoken_end(const uint8_t *text, int64_t i, int64_t n,
                                         int max_digits) {
    if (text[i] == '\'') {
        int64_t end = folded_contraction_end(text, i, n);
        if (end >= 0)
            return end;
    }
    int64_t next, after;
    int cls = class_at(text, i, n, &next);
    if (cls == LETTER)
        return run_end(text, next, n, LETTER);
    /* one character other than a line break, letter or digit may lead a run of letters */
    if (cls != NUMBER && text[i] != '\r' && text[i] != '\n' && next < n &&
        class_at(text, next, n, &after) == LETTER)
        return run_end(text, after, n, LETTER);
    if (cls == NUMBER) {
        int64_t end = next;
        for (int digits = 1; digits < max_digits && end < n; digits++) {
            if (class_at(text, end, n, &after) != NUMBER)
                break;
            end = after;
        }
        return end;
    }
    int64_t others = -1;  /* where a run of other characters starts, if one does */
    if (cls == OTHER)
        others = next;
    else if (text[i] == ' ' && next < n && class_at(text, next, n, &after) == OTHER)
        others = after;
    if (others >= 0) {
        int64_t end = run_end(text, others, n, OTHER);
        while (end < n && (text[end] == '\r' || text[end] == '\n'))
            end++;
        return end;
    }
    /* whitespace: \s*[\r\n]+ ends after the run's last line break, if it has one */
    int64_t last = i, end = next, line_break = (text[i] == '\r' || text[i] == '\n') ? i : -1;
    while (end < n) {
        if (class_at(text, end, n, &after) != SPACE)
            break;
        if (text[end] == '\r' || text[end] == '\n')
            line_break = end;
        last = end;
        end = after;
    }
    if (line_break >= 0)
        return line_break + 1;
    if (end == n || last == i)
        return end;
    return last;
}

static inline int64_t next_pretoken_end(int pattern, const uint8_t *text, int64_t i, int64_t n) {
    if (pattern == PATTERN_GPT2)
        return pretoken_end(text, i, n);
    return split_pretoken_end(text, i, n, pattern == PATTERN_LLAMA3 ? 3 : 1);
}

/* Pre-token end offsets of text under pattern (PATTERN_*) into ends, as bpe_pretokenize. */
int64_t bpe_pretokenize_pattern(int64_t pattern, const uint8_t *text, int64_t n, int64_t *ends,
                                int64_t capacity) {
    if (!classes_ready || pattern < PATTERN_GPT2 || pattern > PATTERN_QWEN2 ||
        (pattern != PATTERN_GPT2 && fold_count == 0))
        return -1;
    int64_t count = 0;
    for (int64_t i = 0; i < n && count < capacity; ) {
        i = next_pretoken_end((int)pattern, text, i, n);
        ends[count++] = i;
    }
    return count;
}

/* Pre-token end offsets of text into ends (capacity >= n suffices); their count, or -1 when the
   classes are not set. For callers that count pre-tokens (training). */
int64_t bpe_pretokenize(const uint8_t *text, int64_t n, int64_t *ends, int64_t capacity) {
    if (!classes_ready)
        return -1;
    int64_t count = 0;
    for (int64_t i = 0; i < n && count < capacity; ) {
        i = pretoken_end(text, i, n);
        ends[count++] = i;
    }
    return count;
}

/* --- a table of byte strings -> id sequences ------------------------------------------------ */

typedef struct {
    uint64_t hash;
    uint32_t key_offset, key_length, value_offset, value_length;  /* key_length 0: empty slot */
} Slot;

typedef struct {
    Slot *slots;
    uint64_t mask;
    uint64_t count;
    uint8_t *keys;
    uint64_t keys_used, keys_capacity;
    int32_t *values;
    uint64_t values_used, values_capacity;
} Table;

static inline uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t hash_bytes(const uint8_t *s, int64_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, s, 8);
        h = (h ^ word) * 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t tail = 0;
    for (int64_t k = 0; k < n; k++)
        tail |= (uint64_t)s[k] << (8 * k);
    return mix(h ^ tail) | 1;
}

static int table_init(Table *table, uint64_t capacity) {
    memset(table, 0, sizeof *table);
    table->slots = calloc(capacity, sizeof(Slot));
    table->mask = capacity - 1;
    return table->slots ? 0 : -1;
}

static void table_free(Table *table) {
    free(table->slots);
    free(table->keys);
    free(table->values);
    memset(table, 0, sizeof *table);
}

static void table_clear(Table *table) {
    memset(table->slots, 0, (table->mask + 1) * sizeof(Slot));
    table->count = table->keys_used = table->values_used = 0;
}

static inline const Slot *table_find(const Table *table, uint64_t hash, const uint8_t *key,
                                     int64_t length) {
    for (uint64_t index = hash & table->mask;; index = (index + 1) & table->mask) {
        const Slot *slot = &table->slots[index];
        if (slot->key_length == 0)
            return NULL;
        if (slot->hash == hash && slot->key_length == (uint64_t)length &&
            memcmp(table->keys + slot->key_offset, key, (size_t)length) == 0)
            return slot;
    }
}

static int grow(void **buffer, uint64_t *capacity, uint64_t needed, size_t item) {
    if (needed <= *capacity)
        return 0;
    uint64_t capacity_new = *capacity ? *capacity : 4096;
    while (capacity_new < needed)
        capacity_new *= 2;
    void *grown = realloc(*buffer, capacity_new * item);
    if (!grown)
        return -1;
    *buffer = grown;
    *capacity = capacity_new;
    return 0;
}

static int table_rehash(Table *table) {
    uint64_t capacity = 2 * (table->mask + 1);
    Slot *slots = calloc(capacity, sizeof(Slot));
    if (!slots)
        return -1;
    for (uint64_t i = 0; i <= table->mask; i++) {
        Slot slot = table->slots[i];
        if (slot.key_length == 0)
            continue;
        uint64_t index = slot.hash & (capacity - 1);
        while (slots[index].key_length)
            index = (index + 1) & (capacity - 1);
        slots[index] = slot;
    }
    free(table->slots);
    table->slots = slots;
    table->mask = capacity - 1;
    return 0;
}

/* Adds key -> ids (key absent, length > 0); -1 when out of memory. */
static int table_insert(Table *table, uint64_t hash, const uint8_t *key, int64_t length,
                        const int32_t *ids, int64_t id_count) {
    if (2 * (table->count + 1) > table->mask + 1 && table_rehash(table))
        return -1;
    if (grow((void **)&table->keys, &table->keys_capacity, table->keys_used + length, 1) ||
        grow((void **)&table->values, &table->values_capacity, table->values_used + id_count,
             sizeof(int32_t)))
        return -1;
    uint64_t index = hash & table->mask;
    while (table->slots[index].key_length)
        index = (index + 1) & table->mask;
    Slot *slot = &table->slots[index];
    slot->hash = hash;
    slot->key_offset = (uint32_t)table->keys_used;
    slot->key_length = (uint32_t)length;
    slot->value_offset = (uint32_t)table->values_used;
    slot->value_length = (uint32_t)id_count;
    memcpy(table->keys + table->keys_used, key, (size_t)length);
    memcpy(table->values + table->values_used, ids, (size_t)id_count * sizeof(int32_t));
    table->keys_used += length;
    table->values_used += id_count;
    table->count++;
    return 0;
}

/* --- the encoder ------------------------------------------------------------------------------ */

typedef struct {
    int32_t byte_ids[256];
    uint64_t *pair_keys;      /* (left << 32 | right), UINT64_MAX for an empty slot */
    uint32_t *pair_ranks;
    uint64_t pair_mask;
    int32_t *merged_by_rank;  /* the id a merge makes, by rank */
    Table cache;
    Table whole_tokens;       /* ignore_merges: a pre-token that is a token is that id */
    int ignore_merges;
    int pattern;              /* PATTERN_* */
    int32_t *ids;             /* the last call's output */
    uint64_t ids_capacity;
    uint32_t *ranks;          /* scratch: rank of each adjacent pair of a pre-token */
    uint64_t ranks_capacity;
    uint32_t *merged_at;      /* scratch: positions of the tokens made in one round */
    uint64_t merged_at_capacity;
    int32_t *next_node, *previous_node;  /* scratch of long pre-tokens: a linked list, */
    uint64_t next_node_capacity, previous_node_capacity;
    uint64_t *heap, *pending;            /* a heap of (rank << 32 | position) */
    uint64_t heap_capacity, pending_capacity;
} Encoder;

static inline uint64_t pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

static inline uint32_t pair_rank(const Encoder *encoder, int32_t left, int32_t right) {
    uint64_t key = pair_key(left, right);
    for (uint64_t index = mix(key) & encoder->pair_mask;;
         index = (index + 1) & encoder->pair_mask) {
        uint64_t found = encoder->pair_keys[index];
        if (found == key)
            return encoder->pair_ranks[index];
        if (found == UINT64_MAX)
            return NO_RANK;
    }
}

void bpe_encoder_free(void *handle) {
    Encoder *encoder = handle;
    if (!encoder)
        return;
    free(encoder->pair_keys);
    free(encoder->pair_ranks);
    free(encoder->merged_by_rank);
    table_free(&encoder->cache);
    table_free(&encoder->whole_tokens);
    free(encoder->ids);
    free(encoder->ranks);
    free(encoder->merged_at);
    free(encoder->next_node);
    free(encoder->previous_node);
    free(encoder->heap);
    free(encoder->pending);
    free(encoder);
}

/* An encoder for byte_ids (the id of each single byte) and the merges: pair (left[i], right[i])
   has rank[i] and makes merged[i]; ranks are distinct and below n_ranks. It splits text with
   pattern (PATTERN_*). NULL when the classes are not set, an argument is out of range or memory
   is short. */
void *bpe_encoder_new(const int32_t *byte_ids, const int32_t *left, const int32_t *right,
                      const int32_t *rank, const int32_t *merged, int64_t n_pairs,
                      int64_t n_ranks, int64_t pattern) {
    if (!classes_ready || n_pairs < 0 || n_ranks < 0 || n_ranks >= (int64_t)NO_RANK ||
        pattern < PATTERN_GPT2 || pattern > PATTERN_QWEN2 ||
        (pattern != PATTERN_GPT2 && fold_count == 0))
        return NULL;
    Encoder *encoder = calloc(1, sizeof *encoder);
    if (!encoder)
        return NULL;
    encoder->pattern = (int)pattern;
    memcpy(encoder->byte_ids, byte_ids, sizeof encoder->byte_ids);
    uint64_t capacity = 16;
    while (capacity < 2 * (uint64_t)n_pairs + 1)
        capacity *= 2;
    encoder->pair_mask = capacity - 1;
    encoder->pair_keys = malloc(capacity * sizeof(uint64_t));
    encoder->pair_ranks = malloc(capacity * sizeof(uint32_t));
    encoder->merged_by_rank = malloc((size_t)(n_ranks + 1) * sizeof(int32_t));
    if (!encoder->pair_keys || !encoder->pair_ranks || !encoder->merged_by_rank ||
        table_init(&encoder->cache, 1 << 16) || table_init(&encoder->whole_tokens, 16)) {
        bpe_encoder_free(encoder);
        return NULL;
    }
    memset(encoder->pair_keys, 0xFF, capacity * sizeof(uint64_t));
    for (int64_t i = 0; i < n_pairs; i++) {
        if (rank[i] < 0 || rank[i] >= n_ranks || left[i] < 0 || right[i] < 0) {
            bpe_encoder_free(encoder);
            return NULL;
        }
        uint64_t key = pair_key(left[i], right[i]);
        uint64_t index = mix(key) & encoder->pair_mask;
        while (encoder->pair_keys[index] != UINT64_MAX && encoder->pair_keys[index] != key)
            index = (index + 1) & encoder->pair_mask;
        encoder->pair_keys[index] = key;
        encoder->pair_ranks[index] = (uint32_t)rank[i];
        encoder->merged_by_rank[rank[i]] = merged[i];
    }
    return encoder;
}

/* ignore_merges: tokens (bytes cut at offsets[0..n], ids[0..n-1]) that a pre-token equal to one
   of them encodes as, whatever the merges would make of it. 0, or -1 when memory is short. */
int bpe_encoder_set_whole_tokens(void *handle, const uint8_t *bytes, const int64_t *offsets,
                                 const int32_t *ids, int64_t n) {
    Encoder *encoder = handle;
    encoder->ignore_merges = 1;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *token = bytes + offsets[i];
        int64_t length = offsets[i + 1] - offsets[i];
        if (length <= 0)
            continue;
        uint64_t hash = hash_bytes(token, length);
        if (!table_find(&encoder->whole_tokens, hash, token, length) &&
            table_insert(&encoder->whole_tokens, hash, token, length, ids + i, 1))
            return -1;
    }
    return 0;
}

/* BPE of one pre-token into out (room for n ids); the number of ids. */
static int64_t merge_pretoken(Encoder *encoder, const uint8_t *piece, int64_t n, int32_t *out) {
    for (int64_t k = 0; k < n; k++)
        out[k] = encoder->byte_ids[piece[k]];
    if (n < 2)
        return n;
    uint32_t *ranks = encoder->ranks, *merged_at = encoder->merged_at;
    int64_t count = n;
    for (int64_t k = 0; k + 1 < count; k++)
        ranks[k] = pair_rank(encoder, out[k], out[k + 1]);
    while (count > 1) {
        uint32_t best = NO_RANK;
        for (int64_t k = 0; k + 1 < count; k++)
            if (ranks[k] < best)
                best = ranks[k];
        if (best == NO_RANK)
            break;
        /* ranks are distinct per pair, so rank == best marks exactly the best pair; merge its
           occurrences left to right, compacting out and ranks in place */
        int32_t made = encoder->merged_by_rank[best];
        int64_t written = 0, merges = 0;
        for (int64_t k = 0; k < count; written++) {
            if (k + 1 < count && ranks[k] == best) {
                out[written] = made;
                merged_at[merges++] = (uint32_t)written;
                k += 2;
            } else {
                out[written] = out[k];
                ranks[written] = ranks[k];
                k += 1;
            }
        }
        count = written;
        for (int64_t m = 0; m < merges; m++) {
            int64_t at = merged_at[m];
            if (at > 0)
                ranks[at - 1] = pair_rank(encoder, out[at - 1], out[at]);
            if (at + 1 < count)
                ranks[at] = pair_rank(encoder, out[at], out[at + 1]);
        }
    }
    return count;
}

static inline void heap_push(uint64_t *heap, uint64_t *size, uint64_t key) {
    uint64_t i = (*size)++;
    while (i > 0) {
        uint64_t parent = (i - 1) / 2;
        if (heap[parent] <= key)
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = key;
}

static inline uint64_t heap_pop(uint64_t *heap, uint64_t *size) {
    uint64_t top = heap[0], last = heap[--*size], count = *size, i = 0;
    if (count == 0)
        return top;
    for (;;) {
        uint64_t child = 2 * i + 1;
        if (child >= count)
            break;
        if (child + 1 < count && heap[child + 1] < heap[child])
            child++;
        if (heap[child] >= last)
            break;
        heap[i] = heap[child];
        i = child;
    }
    heap[i] = last;
    return top;
}

/* merge_pretoken for long pre-tokens (CJK text has no spaces: a paragraph is one pre-token), the
   same rounds in O(n log n). Tokens are nodes of a linked list named by their first byte, so
   positions keep their order; a heap holds (rank, position) of every adjacent pair. A round pops
   every entry of the lowest rank in position order and merges those still current (a merge
   consumes the node to its right, so "a a a" merges once, as left to right does). The pairs a
   round makes join the heap when it ends: none can have its rank (a merged token differs from
   both of its halves), and one of a lower rank (possible in a hand-made merges list) must wait
   for the next round, as in merge_pretoken. A pair at a position only grows, so it never comes
   back: an entry is current exactly when its position holds a token and has that rank. */
static int64_t merge_long_pretoken(Encoder *encoder, const uint8_t *piece, int64_t n,
                                   int32_t *out) {
    int32_t *next = encoder->next_node, *previous = encoder->previous_node;
    uint32_t *rank_at = encoder->ranks;
    uint64_t *heap = encoder->heap, *pending = encoder->pending, size = 0;
    for (int64_t k = 0; k < n; k++) {
        out[k] = encoder->byte_ids[piece[k]];
        next[k] = (int32_t)(k + 1);
        previous[k] = (int32_t)(k - 1);
    }
    rank_at[n - 1] = NO_RANK;
    for (int64_t k = 0; k + 1 < n; k++) {
        rank_at[k] = pair_rank(encoder, out[k], out[k + 1]);
        if (rank_at[k] != NO_RANK)
            heap_push(heap, &size, (uint64_t)rank_at[k] << 32 | (uint64_t)k);
    }
    while (size) {
        uint32_t best = (uint32_t)(heap[0] >> 32);
        int32_t made = encoder->merged_by_rank[best];
        uint64_t waiting = 0;
        while (size && (uint32_t)(heap[0] >> 32) == best) {
            int32_t at = (int32_t)(uint32_t)heap_pop(heap, &size);
            if (out[at] < 0 || rank_at[at] != best)
                continue;  /* consumed by a merge to its left, or its pair has changed */
            int32_t right = next[at], after = next[right];
            out[at] = made;
            out[right] = -1;
            rank_at[right] = NO_RANK;
            next[at] = after;
            rank_at[at] = NO_RANK;
            if (after < n) {
                previous[after] = at;
                rank_at[at] = pair_rank(encoder, made, out[after]);
                if (rank_at[at] != NO_RANK)
                    pending[waiting++] = (uint64_t)rank_at[at] << 32 | (uint32_t)at;
            }
            int32_t before = previous[at];
            if (before >= 0) {
                rank_at[before] = pair_rank(encoder, out[before], made);
                if (rank_at[before] != NO_RANK)
                    pending[waiting++] = (uint64_t)rank_at[before] << 32 | (uint32_t)before;
            }
        }
        for (uint64_t k = 0; k < waiting; k++)
            heap_push(heap, &size, pending[k]);
    }
    int64_t count = 0;
    for (int64_t k = 0; k < n; k = next[k])
        out[count++] = out[k];
    return count;
}

/* Ids of one pre-token into out (room for n ids), through the cache; -1 when memory is short. */
static int64_t encode_pretoken(Encoder *encoder, const uint8_t *piece, int64_t n, int32_t *out) {
    uint64_t hash = 0;
    if (n <= CACHE_MAX_KEY) {
        hash = hash_bytes(piece, n);
        const Slot *slot = table_find(&encoder->cache, hash, piece, n);
        if (slot) {
            memcpy(out, encoder->cache.values + slot->value_offset,
                   slot->value_length * sizeof(int32_t));
            return slot->value_length;
        }
    }
    int64_t count;
    const Slot *whole = encoder->ignore_merges
        ? table_find(&encoder->whole_tokens, hash ? hash : hash_bytes(piece, n), piece, n)
        : NULL;
    if (whole) {
        out[0] = encoder->whole_tokens.values[whole->value_offset];
        count = 1;
    } else if (n <= LONG_PRETOKEN) {
        if (grow((void **)&encoder->ranks, &encoder->ranks_capacity, (uint64_t)n,
                 sizeof(uint32_t)) ||
            grow((void **)&encoder->merged_at, &encoder->merged_at_capacity, (uint64_t)n,
                 sizeof(uint32_t)))
            return -1;
        count = merge_pretoken(encoder, piece, n, out);
    } else {
        /* the heap takes the n - 1 first pairs and at most two per merge (n - 1 merges) */
        if (n >= INT32_MAX ||
            grow((void **)&encoder->ranks, &encoder->ranks_capacity, (uint64_t)n,
                 sizeof(uint32_t)) ||
            grow((void **)&encoder->next_node, &encoder->next_node_capacity, (uint64_t)n,
                 sizeof(int32_t)) ||
            grow((void **)&encoder->previous_node, &encoder->previous_node_capacity, (uint64_t)n,
                 sizeof(int32_t)) ||
            grow((void **)&encoder->heap, &encoder->heap_capacity, 3 * (uint64_t)n,
                 sizeof(uint64_t)) ||
            grow((void **)&encoder->pending, &encoder->pending_capacity, 2 * (uint64_t)n,
                 sizeof(uint64_t)))
            return -1;
        count = merge_long_pretoken(encoder, piece, n, out);
    }
    if (n <= CACHE_MAX_KEY) {
        Table *cache = &encoder->cache;
        if (cache->count >= CACHE_LIMIT || cache->keys_used + n > ARENA_LIMIT ||
            cache->values_used + count > ARENA_LIMIT)
            table_clear(cache);
        if (table_insert(cache, hash, piece, n, out, count))
            return -1;
    }
    return count;
}

/* Encodes text (UTF-8, no special tokens); the number of ids, read with bpe_encoder_ids, or -1
   when memory is short. */
int64_t bpe_encode(void *handle, const uint8_t *text, int64_t n) {
    Encoder *encoder = handle;
    int64_t count = 0;
    for (int64_t i = 0; i < n; ) {
        int64_t end = next_pretoken_end(encoder->pattern, text, i, n);
        /* a pre-token of k bytes makes at most k ids; text makes about one id per 4 bytes */
        if ((uint64_t)(count + end - i) > encoder->ids_capacity &&
            grow((void **)&encoder->ids, &encoder->ids_capacity,
                 (uint64_t)(count + end - i + (n - end) / 4 + 1), sizeof(int32_t)))
            return -1;
        int64_t made = encode_pretoken(encoder, text + i, end - i, encoder->ids + count);
        if (made < 0)
            return -1;
        count += made;
        i = end;
    }
    return count;
}

const int32_t *bpe_encoder_ids(void *handle) {
    return ((Encoder *)handle)->ids;
}
