"""A GRU decoder whose first hidden state is the projected pooled image feature (init-inject)."""

import torch
from torch import nn

from captionlab.models.decoders.base import CaptionDecoder
from captionlab.registry import register


@register("decoder", "gru")
class GRUDecoder(CaptionDecoder):
    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 128, hidden_dim: int = 256):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.image = nn.Linear(feature_dim, hidden_dim)
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.output = nn.Linear(hidden_dim, vocab_size)

    def forward(self, memory, tokens):  # teacher forcing: logits for every position
        hidden, _ = self.gru(self.embed(tokens), self.init_state(memory)["h"].unsqueeze(0))
        return self.output(hidden)

    def init_state(self, memory):
        return {"h": torch.tanh(self.image(memory.pooled))}

    def step(self, tokens, state):  # one word for every row: log-probabilities, new state, no attention
        hidden, h = self.gru(self.embed(tokens).unsqueeze(1), state["h"].unsqueeze(0))
        return torch.log_softmax(self.output(hidden[:, 0]), dim=-1), {"h": h[0]}, None
