"""Structured extraction over a list of documents with with_structured_output.

Each short text becomes a validated ``Contact`` (JSON schema enforced by the endpoint);
``batch`` sends the documents concurrently. Self-checking: exits non-zero unless every
document yields a Contact whose name appears in its text and whose age is its number.

    make examples
    python examples/extraction.py     # with DATABRICKS_HOST / DATABRICKS_TOKEN set
"""

from __future__ import annotations

import os
import sys

from pydantic import BaseModel, Field

from langchain_servingx import ChatServing

CHAT = os.environ.get("SERVINGX_CHAT_ENDPOINT", "local-chat")

DOCUMENTS = [
    "Alice is 30 years old and lives in Paris.",
    "Our new colleague Bob is 42 years old.",
    "Carol, aged 25, joined the team last week.",
]


class Contact(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(description="the person's first name")
    age: int = Field(description="the person's age in years")


def main() -> int:
    extractor = ChatServing(endpoint=CHAT, temperature=0, max_tokens=64).with_structured_output(
        Contact, method="json_schema"
    )
    prompts = [f"Extract the person from this text: {text}" for text in DOCUMENTS]
    contacts = extractor.batch(prompts, config={"max_concurrency": 2})
    failures = 0
    for text, contact in zip(DOCUMENTS, contacts, strict=True):
        print(f"{text!r} -> {contact!r}")
        if (
            not isinstance(contact, Contact)
            or contact.name not in text
            or str(contact.age) not in text
        ):
            failures += 1
    print("extraction: ok" if not failures else f"extraction: {failures} wrong")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
