"""Complete language models built from tinyllm.nn (chapters 11 and 12)."""

from tinyllm.models.bert import BERT, BERT_PRESETS, BERTConfig, bert_parameter_count
from tinyllm.models.gpt import GPT, GPT_PRESETS, GPTConfig, gpt_parameter_count

__all__ = [
    "BERT",
    "BERTConfig",
    "BERT_PRESETS",
    "GPT",
    "GPTConfig",
    "GPT_PRESETS",
    "bert_parameter_count",
    "gpt_parameter_count",
]
