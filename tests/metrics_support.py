"""Reading a Prometheus ``/metrics`` page: its samples by name, and their sum by labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


async def scrape(http, base_url: str) -> dict[str, list]:
    """The samples of ``base_url``/metrics by sample name (parsed strictly)."""
    async with http.get(f"{base_url}/metrics") as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    )
