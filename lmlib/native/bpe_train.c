/* The C core of lmlib.tokenizer.bpe_training: counting pre-tokens and the BPE merge loop.
 *
 * Notable:
 * - Same answers as the pure-Python paths (tests compare them on real and random text).
 * - Counting: a hash table of byte strings takes a chunk's pre-tokens as one buffer with end
 *   offsets (cut by bpe_encode.c's GPT-2 pre-tokenizer) and adds up the chunks' tables, so no
 *   Python object is made per pre-token.
 * - Merging: unique words with their frequencies, pair counts updated only in the words that
 *   hold the merged pair (found through a pair -> words index), the best pair taken from an
 *   indexed max-heap (each pair knows its slot). A merge's count changes are gathered first and
 *   then applied one pair at a time, each re-sifted into a heap valid everywhere else: sifting
 *   several changed entries at once can leave a lesser pair on top.
 * - Order of pairs: the higher count first; on equal counts the lexicographically greater pair
 *   of byte strings (left token's bytes, then right token's), as Python compares
 *   (bytes, bytes) tuples; on equal bytes (two ids spelling the same bytes) the smaller pair of
 *   ids, as the Python heap's last key does. Token bytes are kept here for that comparison.
 * - Words are rewritten in place; a word is listed under a pair at most once per scan of that
 *   word, and a word met twice while applying one merge is skipped by a per-merge stamp.
 *
 * Entry points (called through ctypes):
 *   lmpipe_counter_new/_free/_add_pretokens/_add_counted/_size/_bytes/_export: the counter.
 *   int64_t lmpipe_bpe_train(const uint8_t *word_bytes, const int64_t *word_offsets,
 *                            const int64_t *frequencies, int64_t num_words,
 *                            int64_t num_merges, int32_t *merges_out);
 * word i is word_bytes[word_offsets[i] .. word_offsets[i + 1]); merges_out receives
 * (left id, right id) per merge, ids 0..255 being the bytes and 256 + k the k-th merge. Returns
 * the number of merges made (fewer than asked when no pair is left), or -1 when out of memory.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *grow(void *items, int64_t count, size_t size, int *failed) {
    void *larger = realloc(items, (size_t)count * size);
    if (larger == NULL) *failed = 1;
    return larger;
}

/* ---- counting pre-tokens ----------------------------------------------------------------- */

/* A table of unique byte strings with their counts, kept in insertion order: the pre-tokens of a
 * chunk go in as one buffer with end offsets, a chunk's table goes out as one buffer with
 * offsets and counts, and tables from several chunks are added up here, not in Python. A slot
 * holds the string's hash beside its index, so a probe past another string reads no entry. */
typedef struct {
    uint32_t hash; /* the low half of the string's */
    int32_t entry; /* -1 when empty */
} Slot;

typedef struct {
    int64_t start, count; /* the string is bytes[start .. next entry's start) */
} Entry;

typedef struct {
    uint8_t *bytes; /* the strings, one after the other */
    int64_t bytes_used, bytes_capacity;
    Entry *entries;
    int64_t size, capacity;
    Slot *slots;
    uint64_t mask;
} Counter;

static uint64_t bytes_hash(const uint8_t *data, int64_t length) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)length;
    int64_t i = 0;
    for (; i + 8 <= length; i += 8) {
        uint64_t word;
        memcpy(&word, data + i, 8);
        h = (h ^ word) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    uint64_t tail = 0;
    for (; i < length; i++) tail = (tail << 8) | data[i];
    h = (h ^ tail) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

static int64_t entry_length(const Counter *c, int64_t k) {
    return (k + 1 < c->size ? c->entries[k + 1].start : c->bytes_used) - c->entries[k].start;
}

static Slot *empty_slots(uint64_t capacity) {
    Slot *slots = malloc(capacity * sizeof *slots);
    if (slots != NULL)
        for (uint64_t i = 0; i < capacity; i++) slots[i] = (Slot){0, -1};
    return slots;
}

Counter *lmpipe_counter_new(void) {
    Counter *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->mask = (1 << 16) - 1;
    c->slots = empty_slots(c->mask + 1);
    if (c->slots == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void lmpipe_counter_free(Counter *c) {
    if (c == NULL) return;
    free(c->bytes);
    free(c->entries);
    free(c->slots);
    free(c);
}

static int counter_rehash(Counter *c) {
    uint64_t capacity = 2 * (c->mask + 1);
    Slot *slots = empty_slots(capacity);
    if (slots == NULL) return -1;
    for (uint64_t i = 0; i <= c->mask; i++) {
        if (c->slots[i].entry < 0) continue;
        uint64_t slot = c->slots[i].hash & (capacity - 1);
        while (slots[slot].entry >= 0) slot = (slot + 1) & (capacity - 1);
        slots[slot] = c->slots[i];
    }
    free(c->slots);
    c->slots = slots;
    c->mask = capacity - 1;
    return 0;
}

/* adds count to the string data[0 .. length) */
static int counter_add(Counter *c, const uint8_t *data, int64_t length, int64_t count) {
    uint64_t h = bytes_hash(data, length);
    uint64_t slot = h & c->mask;
    for (; c->slots[slot].entry >= 0; slot = (slot + 1) & c->mask) {
        int64_t k = c->slots[slot].entry;
        if (c->slots[slot].hash == (uint32_t)h && entry_length(c, k) == length &&
            memcmp(c->bytes + c->entries[k].start, data, (size_t)length) == 0) {
            c->entries[k].count += count;
            return 0;
        }
    }
    int failed = 0;
    if (c->size == c->capacity) {
        if (c->size == INT32_MAX) return -1;
        int64_t capacity = c->capacity ? 2 * c->capacity : 1 << 14;
        if (capacity > INT32_MAX) capacity = INT32_MAX;
        Entry *entries = grow(c->entries, capacity, sizeof(Entry), &failed);
        if (entries == NULL) return -1;
        c->entries = entries;
        c->capacity = capacity;
    }
    if (c->bytes_used + length > c->bytes_capacity) {
        int64_t capacity = 2 * (c->bytes_used + length) + (1 << 16);
        uint8_t *bytes = grow(c->bytes, capacity, 1, &failed);
        if (bytes == NULL) return -1;
        c->bytes = bytes;
        c->bytes_capacity = capacity;
    }
    int64_t k = c->size++;
    memcpy(c->bytes + c->bytes_used, data, (size_t)length);
    c->entries[k] = (Entry){c->bytes_used, count};
    c->bytes_used += length;
    c->slots[slot] = (Slot){(uint32_t)h, (int32_t)k};
    if (2 * (uint64_t)c->size > c->mask + 1) return counter_rehash(c);
    return 0;
}

/* counts once each pre-token data[ends[k - 1] .. ends[k]) (ends[-1] = 0); 0, or -1 out of memory */
int lmpipe_counter_add_pretokens(Counter *c, const uint8_t *data, const int64_t *ends,
                                 int64_t num_ends) {
    int64_t start = 0;
    for (int64_t k = 0; k < num_ends; start = ends[k++])
        if (ends[k] > start && counter_add(c, data + start, ends[k] - start, 1)) return -1;
    return 0;
}

/* adds counts[k] to string bytes[offsets[k] .. offsets[k + 1]) */
int lmpipe_counter_add_counted(Counter *c, const uint8_t *bytes, const int64_t *offsets,
                               const int64_t *counts, int64_t num_strings) {
    for (int64_t k = 0; k < num_strings; k++)
        if (offsets[k + 1] > offsets[k] &&
            counter_add(c, bytes + offsets[k], offsets[k + 1] - offsets[k], counts[k]))
            return -1;
    return 0;
}

int64_t lmpipe_counter_size(const Counter *c) { return c->size; }

int64_t lmpipe_counter_bytes(const Counter *c) { return c->bytes_used; }

/* the strings in insertion order: bytes_used bytes, size + 1 offsets, size counts */
void lmpipe_counter_export(const Counter *c, uint8_t *bytes, int64_t *offsets, int64_t *counts) {
    if (c->bytes_used) memcpy(bytes, c->bytes, (size_t)c->bytes_used);
    for (int64_t k = 0; k < c->size; k++) {
        offsets[k] = c->entries[k].start;
        counts[k] = c->entries[k].count;
    }
    offsets[c->size] = c->bytes_used;
}

/* ---- the merge loop's state ------------------------------------------------------------- */

typedef struct {
    int32_t *items;
    int32_t length, capacity;
} WordList;

typedef struct {
    /* tokens: bytes of token t are token_bytes[token_start[t] .. + token_length[t]) */
    uint8_t *token_bytes;
    int64_t token_bytes_used, token_bytes_capacity;
    int64_t *token_start;
    int32_t *token_length;
    int32_t num_tokens;

    /* words: ids of word w are ids[word_start[w] .. + word_length[w]) */
    int32_t *ids;
    const int64_t *word_start;
    int32_t *word_length;
    const int64_t *frequencies;
    int64_t *word_stamp;

    /* pairs, by pair index */
    int32_t *pair_left, *pair_right;
    int64_t *pair_count;
    int64_t *pair_change; /* to the count, from the merge being applied */
    int32_t *heap_slot; /* -1 when not in the heap */
    int64_t *touched_stamp;
    WordList *pair_words;
    int32_t num_pairs, pairs_capacity;

    /* (left, right) -> pair index, open addressing with linear probing; entries never removed */
    uint64_t *table_keys;
    int32_t *table_pairs; /* -1 marks an empty slot */
    uint64_t table_mask;

    int32_t *heap;
    int32_t heap_length;

    int32_t *touched;
    int32_t touched_length;

    int failed;
} Trainer;

/* ---- token bytes and the order of pairs ---------------------------------------------------- */

static int compare_tokens(const Trainer *t, int32_t x, int32_t y) {
    if (x == y) return 0;
    int32_t nx = t->token_length[x], ny = t->token_length[y];
    int c = memcmp(t->token_bytes + t->token_start[x], t->token_bytes + t->token_start[y],
                   (size_t)(nx < ny ? nx : ny));
    if (c) return c;
    return (nx > ny) - (nx < ny);
}

/* whether pair p ranks above pair q */
static int ranks_above(const Trainer *t, int32_t p, int32_t q) {
    if (t->pair_count[p] != t->pair_count[q]) return t->pair_count[p] > t->pair_count[q];
    int c = compare_tokens(t, t->pair_left[p], t->pair_left[q]);
    if (c) return c > 0;
    c = compare_tokens(t, t->pair_right[p], t->pair_right[q]);
    if (c) return c > 0;
    if (t->pair_left[p] != t->pair_left[q]) return t->pair_left[p] < t->pair_left[q];
    return t->pair_right[p] < t->pair_right[q];
}

static int add_token(Trainer *t, int32_t left, int32_t right) {
    int32_t length = t->token_length[left] + t->token_length[right];
    if (t->token_bytes_used + length > t->token_bytes_capacity) {
        int64_t capacity = 2 * (t->token_bytes_used + length);
        uint8_t *bytes = grow(t->token_bytes, capacity, 1, &t->failed);
        if (bytes == NULL) return -1;
        t->token_bytes = bytes;
        t->token_bytes_capacity = capacity;
    }
    int32_t id = t->num_tokens++;
    uint8_t *out = t->token_bytes + t->token_bytes_used;
    memcpy(out, t->token_bytes + t->token_start[left], (size_t)t->token_length[left]);
    memcpy(out + t->token_length[left], t->token_bytes + t->token_start[right],
           (size_t)t->token_length[right]);
    t->token_start[id] = t->token_bytes_used;
    t->token_length[id] = length;
    t->token_bytes_used += length;
    return id;
}

/* ---- the indexed max-heap ------------------------------------------------------------------ */

static void heap_place(Trainer *t, int32_t slot, int32_t pair) {
    t->heap[slot] = pair;
    t->heap_slot[pair] = slot;
}

static void sift_up(Trainer *t, int32_t slot) {
    int32_t pair = t->heap[slot];
    while (slot > 0) {
        int32_t parent = (slot - 1) / 2;
        if (!ranks_above(t, pair, t->heap[parent])) break;
        heap_place(t, slot, t->heap[parent]);
        slot = parent;
    }
    heap_place(t, slot, pair);
}

static void sift_down(Trainer *t, int32_t slot) {
    int32_t pair = t->heap[slot];
    for (;;) {
        int32_t child = 2 * slot + 1;
        if (child >= t->heap_length) break;
        if (child + 1 < t->heap_length && ranks_above(t, t->heap[child + 1], t->heap[child]))
            child++;
        if (!ranks_above(t, t->heap[child], pair)) break;
        heap_place(t, slot, t->heap[child]);
        slot = child;
    }
    heap_place(t, slot, pair);
}

static void heap_remove(Trainer *t, int32_t pair) {
    int32_t slot = t->heap_slot[pair];
    t->heap_slot[pair] = -1;
    int32_t last = t->heap[--t->heap_length];
    if (slot == t->heap_length) return;
    heap_place(t, slot, last);
    sift_up(t, slot);
    sift_down(t, t->heap_slot[last]);
}

/* after a count changed: into, within or out of the heap */
static void heap_update(Trainer *t, int32_t pair) {
    int32_t slot = t->heap_slot[pair];
    if (t->pair_count[pair] <= 0) {
        if (slot >= 0) heap_remove(t, pair);
        return;
    }
    if (slot < 0) {
        slot = t->heap_length++;
        heap_place(t, slot, pair);
        sift_up(t, slot);
    } else {
        sift_up(t, slot);
        sift_down(t, t->heap_slot[pair]);
    }
}

/* ---- the pair table ------------------------------------------------------------------------ */

static uint64_t pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

static uint64_t key_hash(uint64_t key) {
    key ^= key >> 31;
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 29);
}

static int table_resize(Trainer *t, uint64_t capacity) {
    uint64_t *keys = malloc(capacity * sizeof *keys);
    int32_t *pairs = malloc(capacity * sizeof *pairs);
    if (keys == NULL || pairs == NULL) {
        free(keys);
        free(pairs);
        t->failed = 1;
        return -1;
    }
    memset(pairs, 0xff, capacity * sizeof *pairs);
    uint64_t mask = capacity - 1;
    for (int32_t p = 0; p < t->num_pairs; p++) {
        uint64_t key = pair_key(t->pair_left[p], t->pair_right[p]);
        uint64_t slot = key_hash(key) & mask;
        while (pairs[slot] >= 0) slot = (slot + 1) & mask;
        keys[slot] = key;
        pairs[slot] = p;
    }
    free(t->table_keys);
    free(t->table_pairs);
    t->table_keys = keys;
    t->table_pairs = pairs;
    t->table_mask = mask;
    return 0;
}

static int32_t new_pair(Trainer *t, int32_t left, int32_t right) {
    if (t->num_pairs == t->pairs_capacity) {
        int32_t capacity = t->pairs_capacity ? 2 * t->pairs_capacity : 1 << 16;
        int32_t *lefts = grow(t->pair_left, capacity, sizeof(int32_t), &t->failed);
        if (lefts) t->pair_left = lefts;
        int32_t *rights = grow(t->pair_right, capacity, sizeof(int32_t), &t->failed);
        if (rights) t->pair_right = rights;
        int64_t *counts = grow(t->pair_count, capacity, sizeof(int64_t), &t->failed);
        if (counts) t->pair_count = counts;
        int64_t *changes = grow(t->pair_change, capacity, sizeof(int64_t), &t->failed);
        if (changes) t->pair_change = changes;
        int32_t *slots = grow(t->heap_slot, capacity, sizeof(int32_t), &t->failed);
        if (slots) t->heap_slot = slots;
        int64_t *stamps = grow(t->touched_stamp, capacity, sizeof(int64_t), &t->failed);
        if (stamps) t->touched_stamp = stamps;
        WordList *lists = grow(t->pair_words, capacity, sizeof(WordList), &t->failed);
        if (lists) t->pair_words = lists;
        /* every pair can be in the heap and touched at once */
        int32_t *heap = grow(t->heap, capacity, sizeof(int32_t), &t->failed);
        if (heap) t->heap = heap;
        int32_t *touched = grow(t->touched, capacity, sizeof(int32_t), &t->failed);
        if (touched) t->touched = touched;
        if (t->failed) return -1;
        t->pairs_capacity = capacity;
    }
    int32_t p = t->num_pairs++;
    t->pair_left[p] = left;
    t->pair_right[p] = right;
    t->pair_count[p] = 0;
    t->pair_change[p] = 0;
    t->heap_slot[p] = -1;
    t->touched_stamp[p] = -1;
    t->pair_words[p] = (WordList){NULL, 0, 0};
    return p;
}

static int32_t find_pair(Trainer *t, int32_t left, int32_t right) {
    uint64_t key = pair_key(left, right);
    uint64_t slot = key_hash(key) & t->table_mask;
    for (;;) {
        int32_t p = t->table_pairs[slot];
        if (p < 0) break;
        if (t->table_keys[slot] == key) return p;
        slot = (slot + 1) & t->table_mask;
    }
    /* absent: keep the table at most half full, then insert */
    if (2 * (uint64_t)(t->num_pairs + 1) > t->table_mask + 1) {
        if (table_resize(t, 2 * (t->table_mask + 1))) return -1;
        slot = key_hash(key) & t->table_mask;
        while (t->table_pairs[slot] >= 0) slot = (slot + 1) & t->table_mask;
    }
    int32_t p = new_pair(t, left, right);
    if (p < 0) return -1;
    t->table_keys[slot] = key;
    t->table_pairs[slot] = p;
    return p;
}

static int list_word(Trainer *t, int32_t pair, int32_t word) {
    WordList *list = &t->pair_words[pair];
    if (list->length && list->items[list->length - 1] == word) return 0; /* same scan */
    if (list->length == list->capacity) {
        int32_t capacity = list->capacity ? 2 * list->capacity : 4;
        int32_t *items = grow(list->items, capacity, sizeof(int32_t), &t->failed);
        if (items == NULL) return -1;
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->length++] = word;
    return 0;
}

static void release_words(WordList *list) {
    free(list->items);
    *list = (WordList){NULL, 0, 0};
}

/* notes a change to the count of (left, right), applied once the whole merge is (counts change
 * one at a time, each re-sifted into a heap that is valid everywhere else) */
static int32_t count_pair(Trainer *t, int32_t left, int32_t right, int64_t change, int64_t stamp) {
    int32_t p = find_pair(t, left, right);
    if (p < 0) return -1;
    t->pair_change[p] += change;
    if (t->touched_stamp[p] != stamp) {
        t->touched_stamp[p] = stamp;
        t->touched[t->touched_length++] = p;
    }
    return p;
}

/* ---- merging ------------------------------------------------------------------------------- */

/* replaces every (left, right) in word w by new_id, left to right, updating the pair counts */
static int merge_word(Trainer *t, int32_t w, int32_t left, int32_t right, int32_t new_id,
                      int64_t stamp) {
    int32_t *ids = t->ids + t->word_start[w];
    int32_t length = t->word_length[w];
    int32_t i = 0;
    while (i + 1 < length && !(ids[i] == left && ids[i + 1] == right)) i++;
    if (i + 1 >= length) return 0; /* the pair left this word at an earlier merge */
    int64_t frequency = t->frequencies[w];
    for (int32_t k = 0; k + 1 < length; k++)
        if (count_pair(t, ids[k], ids[k + 1], -frequency, stamp) < 0) return -1;
    int32_t out = i;
    while (i < length) {
        if (i + 1 < length && ids[i] == left && ids[i + 1] == right) {
            ids[out++] = new_id;
            i += 2;
        } else {
            ids[out++] = ids[i++];
        }
    }
    t->word_length[w] = out;
    for (int32_t k = 0; k + 1 < out; k++) {
        int32_t p = count_pair(t, ids[k], ids[k + 1], frequency, stamp);
        if (p < 0) return -1;
        if ((ids[k] == new_id || ids[k + 1] == new_id) && list_word(t, p, w)) return -1;
    }
    return 0;
}

static int64_t run(Trainer *t, int64_t num_words, int64_t num_merges, int32_t *merges_out) {
    if (table_resize(t, 1 << 17)) return -1;
    for (int64_t w = 0; w < num_words; w++) {
        int32_t *ids = t->ids + t->word_start[w];
        for (int32_t k = 0; k + 1 < t->word_length[w]; k++) {
            int32_t p = find_pair(t, ids[k], ids[k + 1]);
            if (p < 0 || list_word(t, p, (int32_t)w)) return -1;
            t->pair_count[p] += t->frequencies[w];
        }
    }
    for (int32_t p = 0; p < t->num_pairs; p++)
        if (t->pair_count[p] > 0) heap_place(t, t->heap_length++, p);
    for (int32_t slot = t->heap_length / 2 - 1; slot >= 0; slot--) sift_down(t, slot);

    int64_t merges = 0;
    while (merges < num_merges && t->heap_length > 0) {
        int32_t best = t->heap[0];
        int32_t left = t->pair_left[best], right = t->pair_right[best];
        int32_t new_id = add_token(t, left, right);
        if (new_id < 0) return -1;
        merges_out[2 * merges] = left;
        merges_out[2 * merges + 1] = right;
        /* no word gains (left, right) while it is merged away: its list stays as it is */
        WordList words = t->pair_words[best];
        t->pair_words[best] = (WordList){NULL, 0, 0};
        t->touched_length = 0;
        for (int32_t k = 0; k < words.length; k++) {
            int32_t w = words.items[k];
            if (t->word_stamp[w] == merges) continue;
            t->word_stamp[w] = merges;
            if (merge_word(t, w, left, right, new_id, merges)) {
                release_words(&words);
                return -1;
            }
        }
        release_words(&words);
        for (int32_t k = 0; k < t->touched_length; k++) {
            int32_t p = t->touched[k];
            if (t->pair_change[p] == 0) continue;
            t->pair_count[p] += t->pair_change[p];
            t->pair_change[p] = 0;
            heap_update(t, p);
            if (t->pair_count[p] <= 0) release_words(&t->pair_words[p]);
        }
        merges++;
    }
    return merges;
}

int64_t lmpipe_bpe_train(const uint8_t *word_bytes, const int64_t *word_offsets,
                         const int64_t *frequencies, int64_t num_words, int64_t num_merges,
                         int32_t *merges_out) {
    Trainer t;
    memset(&t, 0, sizeof t);
    int64_t total = word_offsets[num_words];
    int64_t max_tokens = 256 + (num_merges > 0 ? num_merges : 0);
    t.ids = malloc((size_t)(total > 0 ? total : 1) * sizeof(int32_t));
    t.word_length = malloc((size_t)(num_words > 0 ? num_words : 1) * sizeof(int32_t));
    t.word_stamp = malloc((size_t)(num_words > 0 ? num_words : 1) * sizeof(int64_t));
    t.token_start = malloc((size_t)max_tokens * sizeof(int64_t));
    t.token_length = malloc((size_t)max_tokens * sizeof(int32_t));
    t.token_bytes_capacity = 1 << 16;
    t.token_bytes = malloc((size_t)t.token_bytes_capacity);
    int64_t result = -1;
    if (t.ids && t.word_length && t.word_stamp && t.token_start && t.token_length &&
        t.token_bytes) {
        for (int64_t i = 0; i < total; i++) t.ids[i] = word_bytes[i];
        for (int64_t w = 0; w < num_words; w++) {
            t.word_length[w] = (int32_t)(word_offsets[w + 1] - word_offsets[w]);
            t.word_stamp[w] = -1;
        }
        for (int32_t b = 0; b < 256; b++) {
            t.token_bytes[b] = (uint8_t)b;
            t.token_start[b] = b;
            t.token_length[b] = 1;
        }
        t.num_tokens = 256;
        t.token_bytes_used = 256;
        t.word_start = word_offsets;
        t.frequencies = frequencies;
        result = run(&t, num_words, num_merges, merges_out);
    }
    for (int32_t p = 0; p < t.num_pairs; p++) free(t.pair_words[p].items);
    free(t.ids);
    free(t.word_length);
    free(t.word_stamp);
    free(t.token_start);
    free(t.token_length);
    free(t.token_bytes);
    free(t.pair_left);
    free(t.pair_right);
    free(t.pair_count);
    free(t.pair_change);
    free(t.heap_slot);
    free(t.touched_stamp);
    free(t.pair_words);
    free(t.table_keys);
    free(t.table_pairs);
    free(t.heap);
    free(t.touched);
    return result;
}
