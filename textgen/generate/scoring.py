"""What a language model says of a given text: its log-probability and bits per character."""

from __future__ import annotations

import torch

from textgen.data.tokenizer import Tokenizer
from textgen.errors import TextgenError
from textgen.generate.sampling import encode_text, start_token
from textgen.metrics import bits_per_char
from textgen.nn.model import LanguageModel


@torch.inference_mode()
def token_log_probs(model: LanguageModel, tokenizer: Tokenizer, text: str, device: str | torch.device = "cpu"
                    ) -> tuple[list[int], torch.Tensor]:
    """The token ids of `text` and, for each, the model's log-probabilities of every token there
    (tokens, vocabulary), read from its start: the first token is predicted from the same priming
    as generation."""
    if not text:
        raise TextgenError("the text to score is empty; give at least one character")
    ids = encode_text(tokenizer, text, what="text")
    logits, _ = model(torch.tensor([[start_token(tokenizer), *ids[:-1]]], device=device))
    return ids, logits[0].float().log_softmax(-1)


def score(model: LanguageModel, tokenizer: Tokenizer, text: str, device: str | torch.device = "cpu") -> dict:
    """Log-probability (nats) of `text` under the model from its start, with bits per character,
    token and character counts."""
    ids, log_probs = token_log_probs(model, tokenizer, text, device)
    log_prob = log_probs.gather(-1, torch.tensor(ids, device=log_probs.device)[:, None]).sum().item()
    return {"log_prob": log_prob, "bits_per_char": bits_per_char(-log_prob, len(text)),
            "tokens": len(ids), "chars": len(text)}
