"""MMLU (Hendrycks et al. 2021) from its original CSV files, prompted as lm-evaluation-harness
prompts it.

Notable:
- layout: `root/{dev,val,test}/<subject>_<split>.csv`, the layout of the original `data.tar`
  (`lmlib.tasks.download.download_mmlu` writes it). The CSVs have no header; the columns are
  question, A, B, C, D and the answer letter;
- the prompt is the harness's default `mmlu` task, character for character. From
  lm_eval/tasks/mmlu/default/_default_template_yaml:
      doc_to_text: "{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nD. {{choices[3]}}\\nAnswer:"
      doc_to_choice: ["A", "B", "C", "D"]
      fewshot_split: dev, fewshot_config: {sampler: first_n}
  and from lm_eval/tasks/mmlu/_generate_configs.py, the per-subject description
      "The following are multiple choice questions (with answers) about {' '.join(subject.split('_'))}.\\n\\n"
  with TaskConfig's defaults target_delimiter " " and fewshot_delimiter "\\n\\n"
  (lm_eval/config/task.py). lm_eval/api/task.py `fewshot_context` renders description, then
  per shot `text + " " + letter + "\\n\\n"`, then the question's text; each choice is scored as
  the continuation " A" .. " D";
- shots are the first k dev rows of the subject, in file order (the `first_n` sampler). The
  harness runs 0-shot unless told `--num_fewshot 5`, the number the MMLU paper reports;
- the `mmlu` group averages accuracy weighted by subject size (`weight_by_size: True`), that
  is, over all questions (lm_eval/tasks/mmlu/default/_mmlu.yaml).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MMLU_SPLITS = ("dev", "val", "test")
ANSWER_LETTERS = ("A", "B", "C", "D")
# what the harness scores after the prompt: target_delimiter " " + each choice
MMLU_CONTINUATIONS = tuple(f" {letter}" for letter in ANSWER_LETTERS)

# the 57 subjects of the original release, in the harness's (alphabetical) order
MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge",
    "college_biology", "college_chemistry", "college_computer_science", "college_mathematics",
    "college_medicine", "college_physics", "computer_security", "conceptual_physics",
    "econometrics", "electrical_engineering", "elementary_mathematics", "formal_logic",
    "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics",
    "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history",
    "high_school_world_history", "human_aging", "human_sexuality", "international_law",
    "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law",
    "professional_medicine", "professional_psychology", "public_relations", "security_studies",
    "sociology", "us_foreign_policy", "virology", "world_religions",
)


@dataclass(frozen=True)
class MMLUExample:
    subject: str  # file-name form: "high_school_biology"
    question: str
    choices: tuple[str, str, str, str]
    answer: str  # "A".."D"

    @property
    def answer_index(self) -> int:
        return ANSWER_LETTERS.index(self.answer)


def mmlu_file(root: str | Path, subject: str, split: str) -> Path:
    return Path(root) / split / f"{subject}_{split}.csv"


def read_mmlu_csv(path: str | Path, subject: str) -> list[MMLUExample]:
    """One subject's CSV; a bad row raises a ValueError naming the file and line."""
    path = Path(path)
    examples = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        for row in reader:
            # line_num is the last physical line of the record: questions span lines
            where = f"{path}:{reader.line_num}"
            if len(row) != 6:
                raise ValueError(f"{where}: expected 6 columns (question, A, B, C, D, answer), "
                                 f"got {len(row)}; is this an original MMLU CSV?")
            question, *choices, answer = row
            if answer not in ANSWER_LETTERS:
                raise ValueError(f"{where}: answer must be one of A, B, C, D, got {answer!r}")
            examples.append(MMLUExample(subject, question, tuple(choices), answer))
    return examples


def load_mmlu(
    root: str | Path, split: str = "test", subjects: Iterable[str] | None = None
) -> list[MMLUExample]:
    """The examples of `split` ("dev", "val" or "test") for `subjects` (all 57 by default),
    subject by subject in the order given, rows in file order."""
    root = Path(root)
    if split not in MMLU_SPLITS:
        raise ValueError(f"unknown MMLU split {split!r}; expected one of {MMLU_SPLITS}")
    split_dir = root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"{split_dir} does not exist: expected MMLU's original layout "
            f"root/{{dev,val,test}}/<subject>_<split>.csv; lmlib.tasks.download_mmlu(root) "
            "writes it")
    subjects = MMLU_SUBJECTS if subjects is None else tuple(subjects)
    unknown = [subject for subject in subjects if subject not in MMLU_SUBJECTS]
    if unknown:
        raise ValueError(f"unknown MMLU subjects {unknown}; see lmlib.tasks.MMLU_SUBJECTS")
    examples = []
    for subject in subjects:
        path = mmlu_file(root, subject, split)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the MMLU copy in {root}")
        examples += read_mmlu_csv(path, subject)
    return examples


def mmlu_description(subject: str) -> str:
    topic = subject.replace("_", " ")
    return f"The following are multiple choice questions (with answers) about {topic}.\n\n"


def _question_text(example: MMLUExample) -> str:
    # only the question is stripped in the harness's template, not the choices
    a, b, c, d = example.choices
    return f"{example.question.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"


def mmlu_prompt(example: MMLUExample, shots: Sequence[MMLUExample] = ()) -> str:
    """The harness's context for `example`: the subject's description, the `shots` answered
    (the first k dev examples of the same subject, for k-shot), then the question, ending in
    "Answer:". Score each of `MMLU_CONTINUATIONS` after it."""
    others = sorted({shot.subject for shot in shots} - {example.subject})
    if others:
        raise ValueError(f"shots for an {example.subject} question come from {others}; the "
                         "harness takes them from the same subject's dev split")
    answered = "".join(f"{_question_text(shot)} {shot.answer}\n\n" for shot in shots)
    return mmlu_description(example.subject) + answered + _question_text(example)


def mmlu_shots(dev: Sequence[MMLUExample], subject: str, k: int = 5) -> list[MMLUExample]:
    """The first `k` dev examples of `subject`, in file order: the harness's `first_n` sampler."""
    shots = [example for example in dev if example.subject == subject][:k]
    if len(shots) < k:
        raise ValueError(f"asked for {k} shots but the dev examples hold {len(shots)} for "
                         f"{subject}")
    return shots
