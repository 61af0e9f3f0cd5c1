"""The Haut.ai-style API through the gateway, the way its clients drive it: login, datasets,
subjects, a signed upload URL and its ``PUT`` (with curl), compute, polling until
processing's real quality analysis fills the image in, paged lists, signed file URLs, delete
— on both storage backends; every bad input of the issue, another company on every path, and
the cleanup of uploads that never complete."""

from __future__ import annotations

import hashlib
import random
import shutil
import time
import uuid

import pytest
import pyvips

from services.ingest.blobs import OrphanSweeper
from services.ingest.happo.domain import sign_upload_token
from services.ingest.hautai import domain
from shared.analysis import ALGORITHM, AUX_IMAGE_TYPES
from shared.runtime import POOL, STORE
from shared.signing import sign_token
from shared.store_keys import blob_key, derivatives_prefix
from tests import gateway_support
from tests.clients_support import LIMIT
from tests.hautai_support import (
    PASSWORD,
    analysed,
    call,
    compute,
    curl_put,
    login,
    new_subject,
    photo,
    put,
    refused,
    signed_upload,
    snapshot,
    stored,
)
from tests.images_support import jpeg, scene

#: A second gateway with tiny rate limits (anonymous: 2 a minute per address).
strict_gateway = gateway_support.strict_gateway
#: Every field of the seed's image object (the answer of signed_upload_url).
SEED_IMAGE_KEYS = {
    *("id", "name", "side", "light", "image_type", "side_name", "side_tech_name"),
    *("light_name", "light_tech_name", "image_type_name", "image_type_tech_name"),
    *("creation_time", "quality_score", "quality_feedback", "quality_result"),
    *("quality_issues", "problems", "stage_step_number", "stage_number", "urls"),
    *("signed_url", "original_image_id", "image_batch_id", "meta", "application_run_id"),
    "upload_url",
}
#: Every field of the seed's list and get shape.
SEED_LISTING_KEYS = {
    *("id", "name", "side", "quality_score", "problems", "created_at", "signed_url"),
    *("image_batch_id", "meta", "aux_images"),
}
SEED_AUX_KEYS = {"id", "aux_image_type", "creation_time", "algo_app", "signed_url", "meta"}


# --- login --------------------------------------------------------------------------------------


async def test_login_refresh_and_private_tokens(http, stack, account):
    company = await login(http, stack, account)
    types = f"{stack.url}/api/v1/dicts/image_types/"
    await call(http, "GET", types, company.token)
    await call(http, "GET", types, account["token"])  # a private API token works too
    refresh_url = f"{stack.url}/api/v1/auth/refresh/"
    first = await call(
        http, "POST", f"{stack.url}/api/v1/login/",
        json={"username": account["email"].upper(), "password": PASSWORD},
    )  # fmt: skip
    renewed = await call(http, "POST", refresh_url, json={"refresh_token": first["refresh_token"]})
    assert renewed["access_token"] != first["access_token"]
    assert renewed["company_id"] == account["account_id"]
    await call(http, "GET", types, renewed["access_token"])
    await refused(http, "GET", types, first["access_token"], 401, "bad_credentials")
    # A refresh token works once; a replay revokes the whole login.
    await refused(
        http, "POST", refresh_url, None, 401, "bad_credentials",
        json={"refresh_token": first["refresh_token"]},
    )  # fmt: skip
    await refused(http, "GET", types, renewed["access_token"], 401, "bad_credentials")
    await refused(
        http, "POST", refresh_url, None, 401, "bad_credentials",
        json={"refresh_token": renewed["refresh_token"]},
    )  # fmt: skip
    await call(http, "GET", types, company.token)  # another login is not touched
    for body, status, code in (
        ({"username": account["email"], "password": "wrong password"}, 401, "bad_credentials"),
        ({"username": "nobody@example.com", "password": PASSWORD}, 401, "bad_credentials"),
        ({"username": account["email"]}, 422, "invalid_request"),
    ):
        await refused(http, "POST", f"{stack.url}/api/v1/login/", None, status, code, json=body)
    await refused(
        http, "POST", refresh_url, None, 401, "bad_credentials", json={"refresh_token": "x"}
    )
    await refused(http, "GET", types, None, 401, "bad_credentials")


async def test_logins_count_against_the_callers_address(http, strict_gateway, account):
    statuses = []
    for password in ("guess one", "guess two", PASSWORD):
        async with http.post(
            f"{strict_gateway}/api/v1/login/",
            json={"username": account["email"], "password": password},
        ) as response:
            statuses.append(response.status)
    assert statuses == [401, 401, 429]


# --- the whole flow, on both storage backends ---------------------------------------------------


@pytest.fixture(params=["stack", "s3_stack"])
def platform(request):
    """Each storage backend's platform in turn."""
    return request.getfixturevalue(request.param)


async def test_the_whole_flow(http, platform, tmp_path):
    stack = platform
    account = stack.create_account("Haut Flow")
    company = await login(http, stack, account)
    types = await call(http, "GET", f"{stack.url}/api/v1/dicts/image_types/", company.token)
    assert types["count"] == 1 and types["next"] is None and types["previous"] is None
    face = types["results"][0]
    assert {k: face[k] for k in ("id", "name", "tech_name")} == {
        "id": 1, "name": "Face", "tech_name": "face"
    }  # fmt: skip
    assert [(s["id"], s["tech_name"]) for s in face["sides"]] == [
        (1, "front"), (2, "right"), (3, "left")
    ]  # fmt: skip
    assert [(li["id"], li["tech_name"]) for li in face["lights"]] == [(1, "regular")]

    dataset, subject = await new_subject(
        http, company, birth_date="1990-04-01", biological_sex="female", meta={"study": "A"}
    )
    assert dataset["company"] == company.id and dataset["image_type_id"] == 1
    assert subject["company"] == company.id and subject["dataset"] == dataset["id"]
    assert subject["birth_date"] == "1990-04-01" and subject["meta"] == {"study": "A"}
    assert subject["creation_time"].endswith("Z")

    # The simplest case of the seed: no body at all; the batch is made.
    front = await signed_upload(http, company, subject)
    assert set(front) == SEED_IMAGE_KEYS
    assert front["side"] == {"id": 1, "name": "Front", "tech_name": "front"}
    assert front["light"]["tech_name"] == "regular" and front["quality_score"] is None
    upload_url = front["upload_url"]
    assert upload_url["method"] == "PUT"
    assert upload_url["content_type"] == "application/octet-stream"
    assert upload_url["headers"] == {
        "Content-Type": "application/octet-stream",
        "X-Goog-Content-Length-Range": f"1,{stack.env['DARKROOM_MAX_UPLOAD_BYTES']}",
    }
    assert upload_url["url"].startswith(stack.url + "/api/v1/uploads/")
    batch_id = front["image_batch_id"]
    others = [
        await signed_upload(
            http, company, subject, batch_id=batch_id, side_id=side, name=f"{tech} view"
        )
        for side, tech in ((2, "right"), (3, "left"))
    ]
    assert {o["image_batch_id"] for o in others} == {batch_id}
    originals = {o["id"]: photo() for o in [front, *others]}
    if shutil.which("curl"):
        path = tmp_path / "front.jpg"
        path.write_bytes(originals[front["id"]])
        status, body = await curl_put(upload_url, path)
        assert status == 200, body
    else:
        await put(http, upload_url, originals[front["id"]])
    for image in others:
        await put(http, image["upload_url"], originals[image["id"]])

    assert await compute(http, company, batch_id, app_args={"mode": "selfie"}) == {"ok": True}
    images = await analysed(http, company, list(originals))
    for image in images.values():
        assert set(image) >= SEED_LISTING_KEYS and image["status"] == "done"
        assert 0 <= image["quality_score"] <= 100 and image["problems"] == []
        assert isinstance(image["quality_feedback"], str) and image["quality_feedback"]
        assert image["quality_result"]["width"] == 640
        assert sorted(a["aux_image_type"] for a in image["aux_images"]) == sorted(AUX_IMAGE_TYPES)
        for aux in image["aux_images"]:
            assert set(aux) == SEED_AUX_KEYS and ALGORITHM in aux["algo_app"]
            assert aux["signed_url"] is None  # no generate_signed_url
    assert images[front["id"]]["side"] == "front" and images[front["id"]]["signed_url"] is None

    # Paging: absolute next/previous that keep the other parameters.
    listing = company.url(f"/subjects/{subject['id']}/images/")
    page1 = await call(
        http, "GET", listing, company.token, params={"page_size": "2", "ordering": "name"}
    )
    assert page1["count"] == 3 and len(page1["results"]) == 2 and page1["previous"] is None
    assert [r["name"] for r in page1["results"]] == ["left view", "right view"]
    assert page1["next"].startswith(stack.url + "/api/v1/companies/")
    assert "page=2" in page1["next"] and "ordering=name" in page1["next"]
    page2 = await call(http, "GET", page1["next"], company.token)
    assert [r["id"] for r in page2["results"]] == [front["id"]] and page2["next"] is None
    assert "page=" not in page2["previous"] and "page_size=2" in page2["previous"]
    back = await call(http, "GET", page2["previous"], company.token)
    assert [r["id"] for r in back["results"]] == [r["id"] for r in page1["results"]]
    for item in page1["results"] + page2["results"]:
        assert item["signed_url"] and len(item["aux_images"]) == 2
    nested = await call(
        http,
        "GET",
        company.url(f"/datasets/{dataset['id']}/subjects/{subject['id']}/images/"),
        company.token,
        params={"search": "VIEW"},
    )
    assert nested["count"] == 2

    # Get with a signed URL: the bytes, and the aux images'.
    image_url = company.url(f"/images/{front['id']}/")
    got = await call(
        http,
        "GET",
        image_url,
        company.token,
        params={"generate_signed_url": "true", "signed_url_expiration": "120"},
    )
    async with http.get(got["signed_url"]) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        assert "max-age=" in response.headers["Cache-Control"]
        assert await response.read() == originals[front["id"]]
    for aux in got["aux_images"]:
        async with http.get(aux["signed_url"]) as response:
            assert response.status == 200 and response.headers["Content-Type"] == "image/png"
            assert pyvips.Image.new_from_buffer(await response.read(), "").width <= 512

    # Delete: the image, its aux images and their bytes go.
    sha256 = (await stack.apps["ingest"][POOL].fetchval(
        "SELECT sha256 FROM haut_images WHERE id = $1", uuid.UUID(front["id"])
    ))  # fmt: skip
    assert [k for k in await stored(stack) if k.startswith(derivatives_prefix(sha256))]
    assert await call(http, "DELETE", image_url, company.token, expect=204) is None
    await refused(http, "GET", image_url, company.token, 404, "not_found")
    await refused(http, "DELETE", image_url, company.token, 404, "not_found")
    async with http.get(got["signed_url"]) as response:
        assert response.status == 404
    keys = await stored(stack)
    assert blob_key(sha256) not in keys
    assert not [k for k in keys if k.startswith(derivatives_prefix(sha256))]
    assert (await call(http, "GET", listing, company.token))["count"] == 2
    aux_rows = await stack.apps["ingest"][POOL].fetchval(
        "SELECT count(*) FROM aux_images WHERE image_id = $1", uuid.UUID(front["id"])
    )
    assert aux_rows == 0


# --- the analysis judges what was accepted --------------------------------------------------------


async def test_sharp_blurred_small_gif_and_tiny_jpeg_are_judged(http, stack, account):
    company = await login(http, stack, account)
    _, subject = await new_subject(http, company)
    sharp_image = scene(800, 600, seed=random.randint(1, 10**9))
    uploads = {
        "sharp": jpeg(sharp_image),
        "blurred": jpeg(sharp_image.gaussblur(4).cast("uchar")),
        "small": photo(200, 200),
        "gif": scene(320, 320, seed=random.randint(1, 10**9)).gifsave_buffer(),
        "tiny jpeg": photo(100, 100),
    }
    ids, batch_id = {}, None
    for name, data in uploads.items():
        image = await signed_upload(http, company, subject, name=name, batch_id=batch_id)
        batch_id = image["image_batch_id"]
        await put(http, image["upload_url"], data)  # accepted: the analysis judges them
        ids[name] = image["id"]
    await compute(http, company, batch_id)
    images = await analysed(http, company, list(ids.values()))
    judged = {name: images[image_id] for name, image_id in ids.items()}
    sharp, blurred = judged["sharp"], judged["blurred"]
    assert sharp["quality_score"] > blurred["quality_score"]
    assert "blurry" in blurred["quality_issues"] and "blurry" not in sharp["quality_issues"]
    assert "low_resolution" in judged["small"]["problems"]
    assert "unsupported_format" in judged["gif"]["problems"]
    assert "low_resolution" in judged["tiny jpeg"]["problems"]
    assert sharp["problems"] == [] and sharp["quality_result"]["sharpness"] > 100


# --- bad input ----------------------------------------------------------------------------------


def _tamper(url: str) -> str:
    token = url.rsplit("/", 1)[1]
    payload, _, mac = token.partition(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    return url.rsplit("/", 1)[0] + f"/{flipped}.{mac}"


async def test_signed_upload_url_refusals_keep_nothing(http, stack, account):
    company = await login(http, stack, account)
    _, subject = await new_subject(http, company)
    image = await signed_upload(http, company, subject)
    upload_url = image["upload_url"]
    headers = upload_url["headers"]
    good = photo()
    expired = sign_token(
        stack.env["DARKROOM_SIGNING_KEY"],
        {"use": domain.HAUTAI_UPLOAD, "image": image["id"], "account": company.id},
        int(time.time()) - 1,
    )
    happo = sign_upload_token(
        stack.env["DARKROOM_SIGNING_KEY"], company.id, image["id"], int(time.time()) + 60
    )
    before = await snapshot(stack)
    cases = [
        ("expired", {**upload_url, "url": f"{stack.url}/api/v1/uploads/{expired}"}, good, headers,
         403, "forbidden"),
        ("tampered", {**upload_url, "url": _tamper(upload_url["url"])}, good, headers,
         403, "forbidden"),
        ("another kind of grant", {**upload_url, "url": f"{stack.url}/api/v1/uploads/{happo}"},
         good, headers, 403, "forbidden"),
        ("31 MB body", upload_url, b"\xff" * (31 * 1024 * 1024), headers,
         413, "payload_too_large"),
        ("over the limit while streaming", upload_url, good + b"\x00" * LIMIT, headers,
         413, "payload_too_large"),
        ("another content type", upload_url, good, {**headers, "Content-Type": "image/jpeg"},
         415, "unsupported_media_type"),
        ("no length range", upload_url, good, {"Content-Type": "application/octet-stream"},
         400, "bad_request"),
        ("empty", upload_url, b"", headers, 400, "bad_request"),
        ("not an image", upload_url, b"%PDF-1.4 not an image", headers,
         415, "unsupported_media_type"),
        ("a broken JPEG", upload_url, good[:2000], headers, 422, "invalid_request"),
    ]  # fmt: skip
    for label, url, data, sent_headers, status, code in cases:
        async with http.put(url["url"], data=data, headers=sent_headers) as response:
            answer = await response.json()
            assert (response.status, answer["error"]["code"]) == (status, code), (label, answer)
        assert await snapshot(stack) == before, label
    # Nothing was spent: the same URL still takes the image, once.
    assert (await put(http, upload_url, good))["status"] == "uploaded"
    again = await put(http, upload_url, good, expect=409)
    assert again["error"]["code"] == "conflict"


async def test_compute_refusals(http, stack, account):
    company = await login(http, stack, account)
    _, subject = await new_subject(http, company)
    empty = await signed_upload(http, company, subject)
    before = await snapshot(stack)
    message = (await compute(http, company, empty["image_batch_id"], expect=409))["error"]
    assert message["code"] == "conflict" and "no uploaded image" in message["message"]
    assert await snapshot(stack) == before
    await put(http, empty["upload_url"], photo())
    await compute(http, company, empty["image_batch_id"])
    twice = await compute(http, company, empty["image_batch_id"], expect=409)
    assert twice["error"]["code"] == "conflict" and "already" in twice["error"]["message"]
    await compute(http, company, str(uuid.uuid4()), expect=404)
    bad_args = await compute(http, company, empty["image_batch_id"], expect=422, app_args=[1])
    assert bad_args["error"]["code"] == "invalid_request"
    # A computed batch takes no more images.
    refusal = await call(
        http,
        "POST",
        company.url(f"/subjects/{subject['id']}/signed_upload_url/"),
        company.token,
        expect=409,
        json={"batch_id": empty["image_batch_id"]},
    )
    assert refusal["error"]["code"] == "conflict"


async def test_field_and_list_refusals_change_nothing(http, stack, account):
    company = await login(http, stack, account)
    dataset, subject = await new_subject(http, company)
    upload = company.url(f"/subjects/{subject['id']}/signed_upload_url/")
    before = await snapshot(stack)
    for body, fragment in (
        ({"side_id": 9}, "side_id: unknown id 9"),
        ({"light_id": 2}, "light_id: unknown id 2"),
        ({"side_id": True}, "side_id"),
        ({"colour": "red"}, "Unknown field: colour"),
        ({"creation_time": "yesterday"}, "creation_time"),
        ({"meta": [1, 2]}, "meta"),
    ):
        message = await refused(
            http, "POST", upload, company.token, 422, "invalid_request", json=body
        )
        assert fragment in message, message
    await refused(
        http, "POST", upload, company.token, 404, "not_found", json={"batch_id": str(uuid.uuid4())}
    )
    _, other_subject = await new_subject(http, company)
    theirs = await signed_upload(http, company, other_subject)
    before = await snapshot(stack)
    await refused(
        http, "POST", upload, company.token, 404, "not_found",
        json={"batch_id": theirs["image_batch_id"]},
    )  # fmt: skip
    assert await snapshot(stack) == before
    subjects = company.url(f"/datasets/{dataset['id']}/subjects/")
    for body in (
        {},
        {"name": ""},
        {"name": "x", "birth_date": "1990-13-01"},
        {"name": "x", "biological_sex": "f"},
        {"name": "x", "height": 180},
    ):
        await refused(http, "POST", subjects, company.token, 422, "invalid_request", json=body)
    await refused(
        http, "POST", company.url("/datasets/"), company.token, 422, "invalid_request",
        json={"name": "x", "image_type_id": 7},
    )  # fmt: skip
    await refused(http, "POST", subjects, company.token, 400, "bad_request", data=b"{not json")
    # PATCH changes what is sent only.
    one = company.url(f"/datasets/{dataset['id']}/subjects/{subject['id']}/")
    patched = await call(http, "PATCH", one, company.token, json={"meta": {"k": 1}})
    assert patched["meta"] == {"k": 1} and patched["name"] == subject["name"]
    await refused(http, "PATCH", one, company.token, 422, "invalid_request", json={"name": None})
    # Lists: a page past the end, an unknown ordering field, a bad page number.
    listing = company.url("/datasets/")
    assert (await call(http, "GET", listing, company.token))["count"] >= 2
    message = await refused(
        http, "GET", listing, company.token, 404, "not_found", params={"page": "999"}
    )
    assert "Invalid page" in message
    message = await refused(
        http, "GET", listing, company.token, 400, "bad_request", params={"ordering": "-colour"}
    )
    assert "colour" in message
    for params in ({"page": "0"}, {"page_size": "x"}, {"signed_url_expiration": "0"}):
        url = company.url(f"/subjects/{subject['id']}/images/")
        await refused(http, "GET", url, company.token, 400, "bad_request", params=params)
    empty = await call(
        http, "GET", company.url(f"/subjects/{subject['id']}/images/"), company.token
    )
    assert empty == {"count": 0, "next": None, "previous": None, "results": []}
    capped = await call(http, "GET", listing, company.token, params={"page_size": "1000"})
    assert len(capped["results"]) <= domain.MAX_PAGE_SIZE


# --- tenancy --------------------------------------------------------------------------------------


async def test_another_company_gets_404_on_every_path(http, stack, account, other_account):
    company = await login(http, stack, account)
    dataset, subject = await new_subject(http, company)
    image = await signed_upload(http, company, subject)
    await put(http, image["upload_url"], photo())
    d, s, b, i = dataset["id"], subject["id"], image["image_batch_id"], image["id"]
    paths = [
        ("GET", "/datasets/", None),
        ("POST", "/datasets/", {"name": "x"}),
        ("GET", f"/datasets/{d}/", None),
        ("PATCH", f"/datasets/{d}/", {"name": "x"}),
        ("PUT", f"/datasets/{d}/", {"name": "x"}),
        ("DELETE", f"/datasets/{d}/", None),
        ("GET", f"/datasets/{d}/subjects/", None),
        ("POST", f"/datasets/{d}/subjects/", {"name": "x"}),
        ("GET", f"/datasets/{d}/subjects/{s}/", None),
        ("PATCH", f"/datasets/{d}/subjects/{s}/", {"name": "x"}),
        ("PUT", f"/datasets/{d}/subjects/{s}/", {"name": "x"}),
        ("DELETE", f"/datasets/{d}/subjects/{s}/", None),
        ("POST", f"/datasets/{d}/subjects/{s}/signed_upload_url/", {}),
        ("GET", f"/datasets/{d}/subjects/{s}/images/", None),
        ("POST", f"/subjects/{s}/signed_upload_url/", {}),
        ("GET", f"/subjects/{s}/images/", None),
        ("POST", f"/batches/{b}/compute/", {}),
        ("GET", f"/images/{i}/", None),
        ("DELETE", f"/images/{i}/", None),
        ("GET", f"/images/{i}", None),  # without the trailing slash too
    ]
    before = await snapshot(stack)
    intruder = await login(http, stack, other_account)
    for token in (intruder.token, other_account["token"]):
        for method, path, body in paths:
            for base in (company.id, intruder.id):  # this company's path, or its own with our ids
                if base == intruder.id and path in {"/datasets/"}:
                    continue  # their own lists exist, rightly
                url = f"{stack.url}/api/v1/companies/{base}{path}"
                await refused(http, method, url, token, 404, "not_found", json=body)
    assert await snapshot(stack) == before
    assert (await call(http, "GET", company.url(f"/images/{i}/"), company.token))["id"] == i


# --- cascades and abandoned uploads --------------------------------------------------------------


async def test_deleting_a_dataset_takes_its_subjects_images_and_bytes(http, stack, account):
    company = await login(http, stack, account)
    dataset, subject = await new_subject(http, company)
    uploaded = await signed_upload(http, company, subject)
    data = photo()
    await put(http, uploaded["upload_url"], data)
    pending = await signed_upload(http, company, subject)
    sha256 = hashlib.sha256(data).hexdigest()
    assert blob_key(sha256) in await stored(stack)
    await call(
        http, "DELETE", company.url(f"/datasets/{dataset['id']}/"), company.token, expect=204
    )
    for path in (
        f"/datasets/{dataset['id']}/",
        f"/datasets/{dataset['id']}/subjects/{subject['id']}/",
        f"/images/{uploaded['id']}/",
        f"/images/{pending['id']}/",
    ):
        await refused(http, "GET", company.url(path), company.token, 404, "not_found")
    assert blob_key(sha256) not in await stored(stack)
    await put(http, pending["upload_url"], photo(), expect=404)


async def test_uploads_that_never_complete_are_swept(http, stack, account):
    company = await login(http, stack, account)
    _, subject = await new_subject(http, company)
    abandoned = await signed_upload(http, company, subject)
    kept = await signed_upload(http, company, subject)
    pool = stack.apps["ingest"][POOL]
    # Time passes for one of them: its URL expired an hour ago.
    await pool.execute(
        "UPDATE haut_images SET upload_expires_at = now() - interval '1 hour' WHERE id = $1",
        uuid.UUID(abandoned["id"]),
    )
    await OrphanSweeper(pool, stack.apps["ingest"][STORE], grace_seconds=0).sweep_once()
    url = company.url(f"/images/{abandoned['id']}/")
    await refused(http, "GET", url, company.token, 404, "not_found")
    batch = await pool.fetchval(
        "SELECT count(*) FROM image_batches WHERE id = $1", uuid.UUID(abandoned["image_batch_id"])
    )
    assert batch == 0
    assert (await call(http, "GET", company.url(f"/images/{kept['id']}/"), company.token))[
        "status"
    ] == "pending"
    await put(http, abandoned["upload_url"], photo(), expect=404)
