"""Complete language models built from tinyllm.nn (chapters 11, 12 and 18)."""

from tinyllm.models.bert import BERT, BERT_PRESETS, BERTConfig, bert_parameter_count
from tinyllm.models.gpt import GPT, GPT_PRESETS, GPTConfig, gpt_parameter_count
from tinyllm.models.lstm import (
    LSTM_PRESETS,
    RECURRENT_CELLS,
    LSTMConfig,
    LSTMLanguageModel,
    lstm_parameter_count,
)
from tinyllm.models.seq2seq import Seq2Seq, Seq2SeqConfig, seq2seq_parameter_count

__all__ = [
    "BERT",
    "BERTConfig",
    "BERT_PRESETS",
    "GPT",
    "GPTConfig",
    "GPT_PRESETS",
    "LSTMConfig",
    "LSTMLanguageModel",
    "LSTM_PRESETS",
    "RECURRENT_CELLS",
    "bert_parameter_count",
    "gpt_parameter_count",
    "lstm_parameter_count",
    "Seq2Seq",
    "Seq2SeqConfig",
    "seq2seq_parameter_count",
]
