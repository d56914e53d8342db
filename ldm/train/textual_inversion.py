"""Textual inversion (Gal et al. 2022): a new word whose input embedding alone is learnt; the UNet, VAE and the rest
of the text encoder stay as they are, so nothing else the model does changes.

The new token's vector lives in `NewTokenEmbedding`, a trainable row beside the encoder's frozen table (no other
row can drift, and no copy of the table is restored after each step as diffusers' example does). The result is
`learned_embeds.safetensors`, `{token: (1, width)}`: the file diffusers' textual_inversion.py writes and
`load_textual_inversion` reads, which works with our BERT-style MiniLM encoder as with CLIP.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ldm.config import Config, dump_config
from ldm.io import write_text_atomic
from ldm.sampling.concepts import EMBEDDING_FILE
from ldm.shards import write_tensors
from ldm.train.early_stop import SettlesOnPreviews
from ldm.train.targets import FullFinetune, LoraFinetune
from ldm.train.teach_inputs import check_new_word

log = logging.getLogger("ldm")
INIT_WORD = "object"  # the new vector starts here when there is no class prompt


class NewTokenEmbedding(torch.nn.Module):
    """An input embedding: the frozen table, except trainable vectors for the token ids in `ids`."""

    def __init__(self, table: torch.nn.Embedding, ids: list[int], start: torch.Tensor):
        super().__init__()
        self.table = table.requires_grad_(False)
        self.register_buffer("ids", torch.tensor(ids), persistent=False)
        self.vectors = torch.nn.Parameter(start.detach().clone().reshape(len(ids), -1))

    @property
    def weight(self) -> torch.Tensor:
        """The frozen table (transformers reads its dtype and shape through here)."""
        return self.table.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The table's rows, with each new token's row replaced by its trainable vector."""
        out = self.table(input_ids)
        match = (input_ids[..., None] == self.ids.to(input_ids.device)).to(out.dtype)  # (B, L, K)
        new = match @ self.vectors.to(out.dtype)
        return out * (1 - match.sum(-1, keepdim=True)) + new


def start_vector(tokenizer, table: torch.nn.Embedding, words: str) -> torch.Tensor:
    """The mean input embedding of the words' tokens: where the new token starts (near what it is an instance
    of)."""
    ids = tokenizer(words, add_special_tokens=False).input_ids
    ids = ids or tokenizer(INIT_WORD, add_special_tokens=False).input_ids
    return table.weight[torch.tensor(ids)].mean(0).detach()


def add_new_token(tokenizer, text_encoder: torch.nn.Module, name: str, init_words: str) -> NewTokenEmbedding:
    """Add `name` to the tokenizer and give the encoder a trainable vector for it (starting at init_words' mean
    embedding); return the new embedding module, installed in the encoder."""
    token = check_new_word(tokenizer, name)
    table = text_encoder.get_input_embeddings()
    start = start_vector(tokenizer, table, init_words or INIT_WORD)
    tokenizer.add_tokens([token])
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    table = text_encoder.get_input_embeddings()
    embedding = NewTokenEmbedding(table, [tokenizer.convert_tokens_to_ids(token)], start)
    text_encoder.set_input_embeddings(embedding)
    return embedding


def save_embedding(path: str | Path, token: str, vectors: torch.Tensor) -> Path:
    """The learnt vectors as diffusers' textual-inversion file ({token: (n, width)}), written atomically."""
    write_tensors(path, {token: vectors.detach().float().cpu()}, {"format": "pt"})
    return Path(path)


class TextualInversion(SettlesOnPreviews, LoraFinetune):
    """A new token for teach.name, its input embedding alone trained; the result is its embedding file.

    Like a LoRA run it trains a few parameters beside a frozen model, and keeps their EMA the same way (the
    methods it inherits); it adds no adapters."""

    encode_prompts_each_step = True  # the prompts' embeddings change as the vector learns

    def __init__(self, cfg: Config, output_dir: Path, vae_path: str | None = None):
        FullFinetune.__init__(self, cfg, output_dir, vae_path)  # LoraFinetune's own would add adapter checks
        check_new_word(self.tokenizer, cfg.teach.name)

    def build(self) -> None:
        """The folder's frozen UNet and the encoder's new token; only its vector trains."""
        FullFinetune.build(self)
        self.unet.requires_grad_(False)
        self.text_encoder.requires_grad_(False)
        self.embedding = add_new_token(self.tokenizer, self.text_encoder, self.cfg.teach.name,
                                       self.cfg.teach.class_prompt)
        self.token = self.tokenizer.convert_ids_to_tokens(int(self.embedding.ids[0]))
        self.trainable = [self.embedding.vectors]

    def write_result(self, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
        """The embedding file load_textual_inversion reads, and the resolved config beside it."""
        path = save_embedding(self.output_dir / EMBEDDING_FILE, self.token, self.embedding.vectors)
        log.info("embedding -> %s", path)
        write_text_atomic(self.output_dir / "ldm_config.yaml", dump_config(self.cfg))
