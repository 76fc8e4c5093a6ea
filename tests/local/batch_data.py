"""Rows and a schema shared by the live ai_query tests on pandas and on Spark."""

from __future__ import annotations

from pydantic import BaseModel

TEXTS = [
    "The cat sat on the mat all afternoon.",
    "Rain is expected over the mountains tomorrow.",
    "The cat sat on the mat all afternoon.",
    "Stocks rose after the central bank's announcement.",
]
"""Four rows, the first and third equal (one request for both)."""

SUMMARY_PROMPT = "Summarize in one line: {text}"
CITY_PROMPT = "Give the city and its country as JSON for: {place}"


class City(BaseModel):
    city: str
    country: str
