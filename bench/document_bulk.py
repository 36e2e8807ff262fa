"""Document bulk sync: documents created in EspoCRM (simulator), webhooked to the engine and
synced by the real worker into one xAI collection; documents/s until all are clean.

Then one 50 MB document: the worker's peak memory growth while it downloads, hashes and
uploads it (target < 20 MB: streamed through a temp file, never held in memory), measured
from /proc/<worker>/status VmHWM after resetting it (clear_refs 5), with an RSS sampler
as a fallback.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, session  # noqa: E402
from event_storm import Harness  # noqa: E402

BIG_BYTES = 50 * 1024 * 1024


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


async def main(documents: int = 2000, concurrency: int = 16) -> None:
    h = await Harness().start()
    try:
        assert h.espo and h.tester and h.sims
        rk = await h.rk_with_collection()
        before = await h.uploads()
        sem = asyncio.Semaphore(concurrency)

        async def create(i: int) -> str:
            async with sem:
                content = f"Dokument {i}\n".encode() * 200
                att = await h.espo.upload_attachment(f"bulk-{i}.txt", content, "text/plain", "CDokumente", "file")  # type: ignore[union-attr]
                d = await h.espo.create_entity("CDokumente", {"name": f"bulk-{i}.txt", "fileId": att["id"], "raeumungsklagenIds": [rk]})  # type: ignore[union-attr]
                return str(d["id"])

        t0 = time.perf_counter()
        ids = await asyncio.gather(*(create(i) for i in range(documents)))
        created = time.perf_counter()
        await h.wait_clean(list(ids))
        clean = time.perf_counter()
        await h.tester.wait_idle(timeout=600, settle=0.05)
        bulk_uploads = await h.uploads() - before

        # One 50 MB document. The attachment is seeded from a file (a 50 MB data: URI would
        # exceed the simulator's request size limit).
        fd, big_path = tempfile.mkstemp(prefix="bench-big-")
        with os.fdopen(fd, "wb") as fh:
            block = os.urandom(1024 * 1024)
            for _ in range(BIG_BYTES // len(block)):
                fh.write(block)
        try:
            async with session() as s:
                spec = {"attachments": [{"id": "benchbig000000001", "name": "big.bin", "type": "application/octet-stream",
                                         "path": big_path, "role": "Attachment", "relatedType": "CDokumente", "field": "file"}]}
                async with s.post(f"{h.sims.espocrm.url}/_sim/seed", json=spec) as r:
                    assert r.status == 200, await r.text()
            pid = await h.tester.worker_pid()
            rss_before = _status_kb(pid, "VmRSS")
            reset = _reset_peak(pid)
            peak_rss = rss_before
            stop = asyncio.Event()

            async def sample() -> None:
                nonlocal peak_rss
                while not stop.is_set():
                    peak_rss = max(peak_rss, _status_kb(pid, "VmRSS"))
                    await asyncio.sleep(0.01)

            sampler = asyncio.create_task(sample())
            tb = time.perf_counter()
            big = await h.espo.create_entity("CDokumente", {"name": "big.bin", "fileId": "benchbig000000001", "raeumungsklagenIds": [rk]})
            await h.wait_clean([str(big["id"])], timeout=300)
            big_s = time.perf_counter() - tb
            stop.set()
            await sampler
            hwm = _status_kb(pid, "VmHWM")
            big_doc = await h.espo.get_entity("CDokumente", str(big["id"]))
            async with session() as s:
                headers = {"Authorization": f"Bearer {h.settings.xai.api_key.get_secret_value()}"}
                async with s.get(f"{h.sims.xai.url}/v1/files/{big_doc['xaiId']}", headers=headers) as r:
                    uploaded_bytes = (await r.json())["bytes"]
            growth_kb = (max(hwm, peak_rss) if reset else peak_rss) - rss_before
        finally:
            os.unlink(big_path)
        emit("document_bulk", {
            "documents": documents,
            "create_s": created - t0,
            "until_all_clean_s": clean - t0,
            "documents_per_s": documents / (clean - t0),
            "uploads": bulk_uploads,
            "big_file_mb": BIG_BYTES / 1024 / 1024,
            "big_file_sync_s": big_s,
            "big_file_bytes_in_xai": uploaded_bytes,
            "worker_rss_before_mb": rss_before / 1024,
            "big_file_worker_peak_growth_mb": growth_kb / 1024,
            "peak_measured_by": "VmHWM after clear_refs + RSS sampler" if reset else "RSS sampler (10 ms)",
            "target": "uploads == documents; big file peak growth < 20 MB",
        })
    finally:
        await h.stop()


if __name__ == "__main__":
    asyncio.run(main())
