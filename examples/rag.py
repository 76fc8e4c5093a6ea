"""Retrieval-augmented generation with cited sources.

ServingEmbeddings indexes a handful of documents in an in-memory vector store; for each
question the two closest documents become the numbered context of a ChatServing prompt,
and the answer is printed with the sources it was given. Self-checking: exits non-zero
unless every question retrieves its source document first and gets a non-empty answer.

    make examples                     # against the local endpoint
    python examples/rag.py            # with DATABRICKS_HOST / DATABRICKS_TOKEN set
"""

from __future__ import annotations

import os
import sys

from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_servingx import ChatServing, ServingEmbeddings

CHAT = os.environ.get("SERVINGX_CHAT_ENDPOINT", "local-chat")
EMBEDDINGS = os.environ.get("SERVINGX_EMBEDDINGS_ENDPOINT", "local-embeddings")

DOCUMENTS = [
    Document(
        "The Zephyr-9 drone flies for 47 minutes on one battery.", metadata={"source": "drone.md"}
    ),
    Document(
        "Invoices are paid within 30 days of receipt by the finance team.",
        metadata={"source": "finance-policy.md"},
    ),
    Document(
        "The office cafeteria serves vegetarian lasagna every Thursday.",
        metadata={"source": "cafeteria.md"},
    ),
    Document(
        "The Andromeda galaxy is about 2.5 million light-years from Earth.",
        metadata={"source": "astronomy.md"},
    ),
]
QUESTIONS = {
    "How long does the Zephyr-9 drone fly on one battery?": "drone.md",
    "When are invoices paid?": "finance-policy.md",
    "What does the cafeteria serve on Thursday?": "cafeteria.md",
}
PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "Answer the question in one sentence using only the numbered sources below, "
            "and cite the source number in brackets, like [1].\n\n{sources}",
        ),
        ("human", "{question}"),
    ]
)


def main() -> int:
    store = InMemoryVectorStore(ServingEmbeddings(endpoint=EMBEDDINGS))
    store.add_documents(DOCUMENTS)
    chain = PROMPT | ChatServing(endpoint=CHAT, temperature=0, max_tokens=48) | StrOutputParser()
    failures = 0
    for question, expected in QUESTIONS.items():
        found = store.similarity_search(question, k=2)
        sources = "\n".join(f"[{i}] {doc.page_content}" for i, doc in enumerate(found, 1))
        answer = chain.invoke({"sources": sources, "question": question}).strip()
        print(f"Q: {question}\nA: {answer}")
        for i, doc in enumerate(found, 1):
            print(f"   [{i}] {doc.metadata['source']}: {doc.page_content}")
        if found[0].metadata["source"] != expected or not answer:
            print(f"   FAILED: expected {expected} first and an answer", file=sys.stderr)
            failures += 1
    print("rag: ok" if not failures else f"rag: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
