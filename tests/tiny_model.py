"""A tiny random BERT classifier base (2 layers, width 32) saved like a Hugging Face model.

Used by the tests (and by anyone who wants a seconds-long pipeline run) in place of MiniLM:
`python -m tests.tiny_model OUT_DIR`.
"""

from __future__ import annotations

import string
import sys
from pathlib import Path

WORDS = """
a an the i my me you your we our it is are was be been have has had do does did not no can
cant cannot could would will please help hi hello thanks thank hey still why how what when where
order orders account card payment paid pay charged charge twice refund money back return
subscription plan cancel cancelled cancellation renew stop delete deletion data remove close
login log in password reset locked email code sign access app website error
delivery deliver delivered package parcel shipping shipped arrived arrive late tracking where
address move moved change new street city update wrong
broken damaged defect defective faulty stopped working screen product item quality
declined failed fail decline bank transaction again tried
today yesterday week days since still already just want need would like get got
""".split()


def vocabulary() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = [f"##{c}" for c in string.ascii_lowercase + string.digits]
    return list(dict.fromkeys(specials + chars + pieces + WORDS))


def write_sentence_transformers_config(out: Path, pooling: str) -> None:
    """The two files sentence-transformers saves beside a model: its modules and its pooling."""
    import json

    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"}]
    (out / "modules.json").write_text(json.dumps(modules, indent=2))
    (out / "1_Pooling").mkdir(exist_ok=True)
    flags = {f"pooling_mode_{m}": m.startswith(pooling) for m in
             ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")}
    (out / "1_Pooling/config.json").write_text(json.dumps({"word_embedding_dimension": 32, **flags}))


def build_tiny_bert(out_dir: str | Path, seed: int = 0, pooling: str | None = None) -> Path:
    """``pooling`` (mean, cls, max) adds a sentence-transformers pooling config."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    tokenizer = BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        )
    # an encoder without a head, like a real base model: fine-tuning adds the classifier
    BertModel(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if pooling:
        write_sentence_transformers_config(out, pooling)
    return out


if __name__ == "__main__":
    print(build_tiny_bert(sys.argv[1] if len(sys.argv) > 1 else "tiny-bert"))
