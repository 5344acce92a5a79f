"""Estimated cost per model, from list prices per million tokens; operators override with CHATBOTS_PRICES."""

from __future__ import annotations

from dataclasses import dataclass

from .config import ConfigError


@dataclass(frozen=True, slots=True)
class Price:
    input_per_million: float
    output_per_million: float


# USD list prices per million tokens. Longest matching prefix wins; unknown models (local ones) cost nothing.
LIST_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5": Price(1.25, 10.00),
    "o4-mini": Price(1.10, 4.40),
    "o3": Price(2.00, 8.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
}


def parse_prices(text: str | None) -> dict[str, Price]:
    """CHATBOTS_PRICES: "model=input/output;model2=input/output", USD per million tokens."""
    prices: dict[str, Price] = {}
    for entry in (text or "").replace(",", ";").split(";"):
        if not entry.strip():
            continue
        name, _, pair = entry.partition("=")
        try:
            given, _, taken = pair.partition("/")
            prices[name.strip()] = Price(float(given), float(taken))
        except ValueError:
            raise ConfigError(f"CHATBOTS_PRICES must look like 'model=0.15/0.60;other=2.5/10', got {entry.strip()!r}") from None
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
