"""Real Hugging Face tokenizers for tests, made offline: a small BPE trained on the packaged
corpus, and a copy of it with a chat template (saved with ``save_pretrained``, so
``AutoTokenizer`` and ``etalon.workload.load_tokenizer`` load the template with it)."""

from __future__ import annotations

from pathlib import Path

from etalon.workload import load_corpus

# A ChatML-like template with a default system prompt, like SmolLM2's: the server counts its
# tokens as prompt tokens (here ~60 with this small vocabulary).
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(out_dir: Path, kind: str = "bytelevel") -> Path:
    """A small tokenizer trained on the packaged corpus, saved as ``out_dir/tokenizer.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = load_corpus()
    chunks = [corpus[i : i + 1000] for i in range(0, len(corpus), 1000)]
    tok = Tokenizer(models.BPE(unk_token=None if kind == "bytelevel" else "<unk>"))
    if kind == "bytelevel":  # GPT-2 / Llama-3 style
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        special = []
    else:  # SentencePiece style: spaces become "\u2581" glued to the following word
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        alphabet = []
        special = ["<unk>"]
    trainer = trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=alphabet, special_tokens=special, show_progress=False
    )
    tok.train_from_iterator(chunks, trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    return out_dir


def with_chat_template(tokenizer_dir: Path, out_dir: Path, template: str = CHAT_TEMPLATE) -> Path:
    """A copy of the tokenizer in ``tokenizer_dir`` with ``template`` as its chat template."""
    import transformers

    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_dir / "tokenizer.json"),
                                              chat_template=template)
    hf.save_pretrained(str(out_dir))
    return out_dir
