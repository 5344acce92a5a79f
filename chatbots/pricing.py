"""Estimated cost per model, from list prices per million tokens; operators override with CHATBOTS_PRICES."""

from __future__ import annotations

from dataclasses import dataclass

from .config import ConfigError


@dataclass(frozen=True, slots=True)
class Price:
    input_per_million: float
    output_per_million: float
    cached_input_per_million: float | None = None
    """Cached prompt tokens' price (None: as input). Estimates count every prompt token at the input price, an
    upper bound, because servers do not always report cached tokens."""


# USD list prices per million tokens (input, output, cached input), OpenAI's standard tier as of late 2025.
# Longest matching prefix wins; unknown models (local ones) cost nothing unless CHATBOTS_PRICES names them.
LIST_PRICES: dict[str, Price] = {
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-pro": Price(15.00, 120.00),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4-turbo": Price(10.00, 30.00),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o3-pro": Price(20.00, 80.00),
    "o3": Price(2.00, 8.00, 0.50),
    "o1-mini": Price(1.10, 4.40, 0.55),
    "o1": Price(15.00, 60.00, 7.50),
    "gpt-3.5-turbo": Price(0.50, 1.50),
}


def parse_prices(text: str | None) -> dict[str, Price]:
    """CHATBOTS_PRICES: "model=input/output;model2=input/cached-input/output", USD per million tokens."""
    prices: dict[str, Price] = {}
    for entry in (text or "").replace(",", ";").split(";"):
        if not entry.strip():
            continue
        name, _, given = entry.partition("=")
        parts = given.split("/")
        try:
            if not name.strip() or len(parts) not in (2, 3):
                raise ValueError
            values = [float(part) for part in parts]
            if any(not 0 <= value < 1e6 for value in values):  # also refuses nan and inf
                raise ValueError
        except ValueError:
            raise ConfigError(
                "CHATBOTS_PRICES must look like 'model=0.15/0.60;other=2.5/1.25/10' (USD per million tokens: "
                f"input/output, or input/cached input/output), got {entry.strip()[:80]!r}"
            ) from None
        prices[name.strip()] = Price(values[0], values[-1], values[1] if len(values) == 3 else None)
    return prices


class PriceList:
    def __init__(self, overrides: dict[str, Price] | None = None) -> None:
        self.prices = {**LIST_PRICES, **(overrides or {})}

    def price(self, model: str) -> Price | None:
        name = model.rsplit("/", 1)[-1]
        best = max((prefix for prefix in self.prices if name.startswith(prefix) or model == prefix), key=len, default=None)
        return self.prices[best] if best else None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.price(model)
        if price is None:
            return 0.0
        return (prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million) / 1_000_000
