"""The embed scenario's peer: the farm's model called directly, sentence-transformers `encode`.

    python -m bench.peers.embed_direct --texts FILE --model DIR|ID [--batch 64]

Loads the model as the embeddings workers do (core.providers.embeddings.resolve_model_dir, offline)
and encodes one batch to warm it, then prints `ready {json}`. For every line on stdin (`go`, or
`go N`: the first N texts only) it encodes the texts (a JSON list in FILE) in one `encode` call of
the same batch size, normalized as the farm stores them, and prints `done {json}`; it exits at the
end of stdin. The harness measures its process's CPU between the line it sends and `done`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=Path, required=True, help="a JSON list of texts")
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    texts: list[str] = json.loads(args.texts.read_text())

    import torch
    from sentence_transformers import SentenceTransformer

    from core.providers.embeddings import resolve_model_dir

    st = SentenceTransformer(str(resolve_model_dir(args.model)))
    st.encode(texts[: args.batch], batch_size=args.batch, show_progress_bar=False)
    print("ready " + json.dumps({"torch_threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        count = int(line.split()[1]) if len(line.split()) > 1 else len(texts)
        started = time.perf_counter()
        vectors = st.encode(
            texts[:count], batch_size=args.batch, normalize_embeddings=True, show_progress_bar=False
        )
        seconds = time.perf_counter() - started
        print("done " + json.dumps({"texts": len(vectors), "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
