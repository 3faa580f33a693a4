"""File names and formats of the artifacts, defined once: every stage that writes or reads one
of these files names it through this module. A flat list of constants, one comment each."""

DOCUMENTS_FILE = "documents.parquet"  # documents of a stage (web, filtered, deduplicated): Parquet
DECISIONS_FILE = "decisions.parquet"  # filtered_documents: why each input document was kept/removed
FUNNEL_PLOT_FILE = "funnel.png"  # filtered_documents: documents remaining after each filter
QUALITY_MODEL_FILE = "quality.bin"  # quality_classifier: the fastText wiki-vs-cc model
QUALITY_REFERENCE_FILE = "quality_reference.jsonl.gz"  # crawl directory: the quality positives
SIGNATURES_FILE = "signatures.parquet"  # minhash_signatures: band hashes and shingle sets per document
CLUSTERS_FILE = "clusters.parquet"  # duplicate_clusters: one row per document in a duplicate cluster
REPEATED_LINES_FILE = "repeated_lines.parquet"  # duplicate_clusters: corpus-wide repeated line hashes
S_CURVE_PLOT_FILE = "s_curve.png"  # duplicate_clusters: the LSH candidate probability by Jaccard
CLUSTER_SIZES_PLOT_FILE = "cluster_sizes.png"  # duplicate_clusters: clusters by size
TRAIN_TEXT_FILE = "train.txt"  # pretraining_corpus: training documents joined by <|endoftext|>
VALIDATION_TEXT_FILE = "val.txt"  # pretraining_corpus: held-out documents, same format
DOC_IDS_FILES = {  # pretraining_corpus: the doc_id of each document of a split, one per line, in order
    "train": "train.doc_ids.txt", "val": "val.doc_ids.txt"}
VOCAB_FILE = "vocab.json"  # bpe_tokenizer: GPT-2 style {token string: id}
MERGES_FILE = "merges.txt"  # bpe_tokenizer: GPT-2 style merges, one pair a line
TOKENIZER_CONFIG_FILE = "tokenizer.json"  # bpe_tokenizer: format name and special tokens
TOKEN_SHARDS_FORMAT = "lmpipe-token-shards/1"  # token_shards: the format named in index.json
TOKEN_SHARDS_INDEX_FILE = "index.json"  # token_shards: dtype, vocabulary and the shards per split
MODEL_CONFIG_FILE = "config.json"  # a saved model or checkpoint directory: the model/train config
MODEL_WEIGHTS_FILE = "model.pt"  # a saved model directory (model/): the weights, torch.save
CHECKPOINT_FILE = "checkpoint.pt"  # a training checkpoint: model, optimizer, step, RNG, data position
SHARDED_CHECKPOINT_INDEX_FILE = "sharded.json"  # a ZeRO-1/FSDP checkpoint: strategy and layout
TRAIN_LOG_FILE = "log.jsonl"  # a training run: one JSON record per logged step or evaluation
LOSS_CURVE_PLOT_FILE = "loss_curve.png"  # a training run: train and validation loss
EVALUATION_FILE = "evaluation.json"  # <checkpoint>_eval: the battery's result and config, no timings
EVALUATION_TIMINGS_FILE = "timings.json"  # <checkpoint>_eval: seconds in all and per task row
EVALUATION_SAMPLES_FILE = "samples.jsonl"  # <checkpoint>_eval: sample generations, one a line
REPORT_FILE = "report.md"  # eval_report: the report card
TRAINING_CURVES_PLOT_FILE = "training_curves.png"  # eval_report: every checkpoint's training loss
BITS_PER_BYTE_PLOT_FILE = "bits_per_byte.png"  # eval_report: bits per byte per checkpoint
TASK_SCORES_PLOT_FILE = "task_scores.png"  # eval_report: task scores with their intervals
