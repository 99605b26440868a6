"""The one name map from Hugging Face BERT checkpoints to tinyllm's BERT (chapter 13).

A checkpoint is a dictionary of named arrays; porting it means naming each array the way the other
code does, and storing it the way the other code multiplies by it. Hugging Face's ``BertModel``
(Wolf et al. 2020) names the released BERT's TensorFlow variables (Devlin et al. 2019) like this:

    embeddings.{word,position,token_type}_embeddings.weight     -> tok_emb, pos_emb, seg_emb
    embeddings.LayerNorm                                        -> emb_ln
    encoder.layer.{i}.attention.self.{query,key,value}          -> encoder.layers.{i}.attn.*_proj
    encoder.layer.{i}.attention.output.dense / .LayerNorm       -> attn.out_proj / ln1 (post-LN)
    encoder.layer.{i}.intermediate.dense / output.dense         -> ff.fc1 / ff.fc2
    encoder.layer.{i}.output.LayerNorm                          -> ln2
    pooler.dense                                                -> pooler         (NSP's tanh layer)
    cls.seq_relationship                                        -> nsp_head
    cls.predictions.transform.dense / .LayerNorm, .bias         -> mlm_dense / mlm_ln, mlm_bias

Three spellings differ between checkpoints, and :func:`canonical_name` undoes them before the map
is read: the task models (``BertForPreTraining``, ``BertForMaskedLM``, ...) put ``bert.`` in front
of the encoder's names; checkpoints converted from TensorFlow before 2019 call the LayerNorm's
scale and shift ``gamma`` and ``beta`` (now ``weight`` and ``bias``).

A PyTorch ``nn.Linear`` stores its weight as (out_features, in_features) and computes x W^T + b;
tinyllm's Linear stores (in_features, out_features) and computes x W + b (eq. 8.2), so every Linear
weight is transposed on the way in. Embedding tables (V, C) and LayerNorm vectors (C,) are stored
the same way by both.
"""

from __future__ import annotations

HF_EMBEDDINGS = {  # Hugging Face module -> tinyllm module, once per model
    "embeddings.word_embeddings": "tok_emb",
    "embeddings.position_embeddings": "pos_emb",
    "embeddings.token_type_embeddings": "seg_emb",
    "embeddings.LayerNorm": "emb_ln",
}
HF_LAYER = {  # encoder.layer.{i}.<key> -> encoder.layers.{i}.<value>, once per block
    "attention.self.query": "attn.q_proj",
    "attention.self.key": "attn.k_proj",
    "attention.self.value": "attn.v_proj",
    "attention.output.dense": "attn.out_proj",
    "attention.output.LayerNorm": "ln1",
    "intermediate.dense": "ff.fc1",
    "output.dense": "ff.fc2",
    "output.LayerNorm": "ln2",
}
HF_HEADS = {  # the pretraining heads: a checkpoint of the bare encoder (BertModel) lacks some
    "pooler.dense": "pooler",
    "cls.seq_relationship": "nsp_head",
    "cls.predictions.transform.dense": "mlm_dense",
    "cls.predictions.transform.LayerNorm": "mlm_ln",
}
HF_MLM_BIAS = ("cls.predictions.bias", "mlm_bias")  # a bare vector, not a module's
# Arrays tinyllm does not keep: the decoder is tied to the word embeddings (BERT ties them, and so
# does tinyllm's MLM head), and position_ids is a buffer holding 0, 1, ..., T - 1.
HF_TIED = {"cls.predictions.decoder.weight": "embeddings.word_embeddings.weight",
           "cls.predictions.decoder.bias": "cls.predictions.bias"}
HF_BUFFERS = ("embeddings.position_ids",)
# tinyllm module prefix -> the head it belongs to, for the report of absent heads
HEAD_OF = {"pooler": "pooler", "nsp_head": "NSP head", "mlm_dense": "MLM head",
           "mlm_ln": "MLM head", "mlm_bias": "MLM head"}


def canonical_name(name: str) -> str:
    """A checkpoint's array name in today's spelling of ``BertModel``.

    'bert.encoder.layer.0.output.LayerNorm.gamma' -> 'encoder.layer.0.output.LayerNorm.weight'.
    """
    name = name.removeprefix("bert.")
    if name.endswith(".gamma"):
        name = name[: -len("gamma")] + "weight"
    elif name.endswith(".beta"):
        name = name[: -len("beta")] + "bias"
    return name


def bert_name_map(num_layers: int) -> dict[str, str]:
    """Every canonical Hugging Face name of an L-block BERT -> the tinyllm parameter it fills."""
    modules = dict(HF_EMBEDDINGS)
    for i in range(num_layers):
        for hf, ours in HF_LAYER.items():
            modules[f"encoder.layer.{i}.{hf}"] = f"encoder.layers.{i}.{ours}"
    modules.update(HF_HEADS)
    names = {}
    for hf, ours in modules.items():
        names[f"{hf}.weight"] = f"{ours}.weight"
        if not hf.endswith("_embeddings"):  # embedding tables have no bias
            names[f"{hf}.bias"] = f"{ours}.bias"
    names[HF_MLM_BIAS[0]] = HF_MLM_BIAS[1]
    return names


def head_of(tinyllm_name: str) -> str | None:
    """The pretraining head a tinyllm parameter belongs to ('mlm_ln.bias' -> 'MLM head'), or None
    for the encoder's own parameters, which every checkpoint must hold."""
    return HEAD_OF.get(tinyllm_name.split(".")[0])
