"""Tamper evidence (issue 15 §5): hash chains, signed checkpoints, ``carbonflow audit verify`` — on
SQLite and PostgreSQL.  Each kind of tampering is done the way an intruder with database access would
(plain SQL on the tables) and must be caught and named; retention must not be."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import delete, insert, select, update
from test_store import T0, load_document, seed

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.audit import load_private_key, public_key_path, write_key
from carbonflow.center.maintenance import MaintenanceScheduler
from carbonflow.center.store import (
    Store,
    create_user,
    ingest_batch,
    interval_from_document,
    make_checkpoint,
    purge_older_than,
    queue_command,
    record_audit,
    save_new_version,
    save_release,
    verify,
)
from carbonflow.center.store.audit import list_audit
from carbonflow.center.store.chain import ChainHead, canonical_json, decimal_text
from carbonflow.center.store.checkpoints import Checkpoint, document
from carbonflow.center.store.engine import make_engine, upgrade
from carbonflow.center.store.partitions import ensure_partitions, months_between
from carbonflow.center.store.reports import Release, canonical_sha256
from carbonflow.center.store.schema import TIME_SERIES_TABLES, AuditEntry, Interval, Reading
from carbonflow.center.store.versions import IntervalVersion
from carbonflow.cli import main
from carbonflow.messages.c4 import Batch
from carbonflow.messages.c4 import Reading as C4Reading

KEY = Ed25519PrivateKey.generate()
POINT = "EM-U1/1"


def reading_batch(batch_id: str, readings: list[tuple[str, datetime, str]], seq: int = 1) -> Batch:
    return Batch(
        collector_id="C1",
        batch_id=f"batch-{batch_id}",
        seq=seq,
        created_at=T0,
        readings=[C4Reading(point=p, ts=ts, value=v) for p, ts, v in readings],
    )


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def seeded(target: Store) -> Store:
    """Readings (one late, one replayed), two versions of an interval, a release, audit entries, and a
    checkpoint."""
    seed(target)
    ingest_batch(
        target,
        reading_batch(
            "b1", [(POINT, at(15), "100.10"), (POINT, at(30), "100.20"), ("RTU-B1/1", at(15), "12.5")]
        ),
    )
    ingest_batch(
        target,
        reading_batch(
            "b2", [(POINT, at(45), "100.30"), (POINT, at(5), "100.05"), (POINT, at(30), "100.20")], seq=2
        ),
    )  # late, and a duplicate
    for reason in ("first", "late reading"):
        record = interval_from_document(at(15), 900, load_document({"U1": (1.0, 500.0)}))
        save_new_version(target, record, reason)
    save_release(
        target, period="month", start="2025-03", min_users=3, version="v", content={"AH": 1.5}, actor="admin"
    )
    queue_command(target, "C1", "time_sync", actor="operator")
    record_audit(target, "alice", "login", detail={"from": "10.0.0.7"})
    make_checkpoint(target, KEY)
    return target


def findings(target: Store) -> list[str]:
    return [str(f) for f in verify(target, KEY.public_key()).findings]


def sql(target: Store, statement) -> None:
    with target.write() as connection:
        connection.execute(statement)


def test_a_seeded_database_verifies_clean(store):  # noqa: F811
    report = verify(seeded(store), KEY.public_key())
    assert report.findings == []
    # 5 readings (the replay is not a link), 2 interval versions, 1 release, audit: command + login
    assert report.links == {"reading": 5, "interval": 2, "release": 1, "audit": 2}
    assert report.chains["reading"] == 2 and report.checkpoints == 1


def test_late_readings_chain_in_arrival_order(store):  # noqa: F811
    seeded(store)
    with store.read() as connection:
        rows = connection.execute(
            select(Reading.ts, Reading.chain_seq).where(Reading.point_id == POINT).order_by(Reading.chain_seq)
        ).all()
    assert [(ts, seq) for ts, seq in rows] == [(at(15), 1), (at(30), 2), (at(45), 3), (at(5), 4)]


def test_an_edited_value_is_named(store):  # noqa: F811
    seeded(store)
    sql(store, update(Reading).where(Reading.point_id == POINT, Reading.ts == at(30)).values(value="99.20"))
    assert findings(store) == [f"readings point {POINT} ts 2025-03-01T00:30:00.000000Z (link 2): edited"]


def test_an_edited_ts_is_named(store):  # noqa: F811
    seeded(store)
    sql(store, update(Reading).where(Reading.point_id == POINT, Reading.ts == at(45)).values(ts=at(50)))
    assert findings(store) == [f"readings point {POINT} ts 2025-03-01T00:50:00.000000Z (link 3): edited"]


def test_an_inserted_reading_is_named(store):  # noqa: F811
    seeded(store)
    row = {
        "point_id": POINT,
        "ts": at(60),
        "value": "1",
        "quality": "good",
        "received_at": T0,
        "batch_id": "x",
    }
    sql(store, insert(Reading).values(**row))
    assert findings(store) == [f"readings point_id {POINT} ts 2025-03-01T01:00:00.000000Z: inserted"]


def test_a_reading_inserted_with_a_forged_link_is_named(store):  # noqa: F811
    seeded(store)
    row = {
        "point_id": POINT,
        "ts": at(20),
        "value": "1",
        "quality": "good",
        "received_at": T0,
        "batch_id": "x",
        "chain_seq": 2,
        "chain_hash": "f" * 64,
    }
    sql(store, insert(Reading).values(**row))
    assert findings(store) == [f"readings point {POINT} ts 2025-03-01T00:20:00.000000Z (link 2): inserted"]


def test_a_deleted_reading_is_named(store):  # noqa: F811
    seeded(store)
    sql(store, delete(Reading).where(Reading.point_id == POINT, Reading.ts == at(30)))
    assert findings(store) == [
        f"readings reading chain '{POINT}' link 2 "
        f"(after point {POINT} ts 2025-03-01T00:15:00.000000Z (link 1)): deleted"
    ]


def test_a_deleted_tail_is_caught_by_the_checkpoint_even_with_the_head_rewritten(store):  # noqa: F811
    seeded(store)
    sql(store, delete(Reading).where(Reading.point_id == POINT, Reading.ts == at(5)))  # link 4, the last
    with store.read() as connection:
        link3 = connection.execute(
            select(Reading.chain_hash).where(Reading.point_id == POINT, Reading.ts == at(45))
        ).scalar_one()
    sql(
        store,
        update(ChainHead)
        .where(ChainHead.kind == "reading", ChainHead.key == POINT)
        .values(seq=3, hash=link3),
    )
    assert findings(store) == [
        f"readings reading chain '{POINT}' links 4..4 (recorded by checkpoint 1): deleted"
    ]


def test_a_deleted_interval_version_is_named(store):  # noqa: F811
    seeded(store)
    sql(store, delete(IntervalVersion).where(IntervalVersion.version == 1))
    [finding] = findings(store)
    assert finding.startswith(
        "intervals interval chain '2025-03-01T00:15:00.000000Z||900' link 1 (after its start)"
    )
    assert finding.endswith(": deleted")


def test_an_edited_current_interval_is_named(store):  # noqa: F811
    seeded(store)
    sql(store, update(Interval).values(totals={"load_carbon_t_per_h": 0.1}))
    assert findings(store) == [
        "intervals ts 2025-03-01T00:15:00.000000Z level '' interval_s 900 version 2: edited"
    ]


def test_an_edited_audit_entry_is_named(store):  # noqa: F811
    seeded(store)
    sql(store, update(AuditEntry).where(AuditEntry.action == "login").values(actor="mallory"))
    [finding] = findings(store)
    assert finding.startswith("audit id ") and finding.endswith("(login): edited")


def test_an_edited_release_content_is_named(store):  # noqa: F811
    seeded(store)
    sql(store, update(Release).values(content={"AH": 0.5}))
    [finding] = findings(store)
    assert finding.startswith("releases id ") and finding.endswith("(month 2025-03): edited")


def test_a_forged_checkpoint_signature_is_named(store):  # noqa: F811
    seeded(store)
    with store.read() as connection:
        row = dict(connection.execute(select(Checkpoint.__table__)).one()._mapping)
    forged = base64.b64encode(Ed25519PrivateKey.generate().sign(document(row))).decode()
    sql(store, update(Checkpoint).values(signature=forged))
    [finding] = findings(store)
    assert finding.startswith("checkpoints id 1 (") and finding.endswith("forged (signature)")


def test_a_checkpoint_re_signed_by_another_key_is_refused_with_the_centers_public_key(store):  # noqa: F811
    seeded(store)
    intruder = Ed25519PrivateKey.generate()
    make_checkpoint(store, intruder)
    assert verify(store).findings == []  # the keys stored in the database prove nothing ...
    assert any("forged (signed by another key)" in f for f in findings(store))  # ... the center's key does


def test_retention_is_not_reported_as_tampering(store):  # noqa: F811
    seeded(store)  # readings of T0 (2025-03-01), one of them late
    later = T0 + timedelta(days=400)
    ingest_batch(store, reading_batch("b3", [(POINT, later, "200.0"), (POINT, at(10), "100.08")], seq=3))
    report = purge_older_than(store, days=30, now=later + timedelta(days=1))
    assert report.links_retired >= 6
    assert findings(store) == []
    # and after one more purge joining the runs, and a new checkpoint
    ingest_batch(store, reading_batch("b4", [(POINT, later + timedelta(days=60), "201.0")], seq=4))
    make_checkpoint(store, KEY)
    purge_older_than(store, days=30, now=later + timedelta(days=40))
    assert findings(store) == []


def test_retention_keeps_a_late_reading_gap_verifiable(store):  # noqa: F811
    seed(store)
    ingest_batch(store, reading_batch("b1", [(POINT, at(0), "1"), (POINT, T0 + timedelta(days=40), "2")]))
    ingest_batch(store, reading_batch("b2", [(POINT, at(1), "3")], seq=2))  # late: link 3, ts old
    purge_older_than(store, days=30, now=T0 + timedelta(days=45))  # links 1 and 3 go, 2 stays
    assert findings(store) == []
    sql(store, delete(Reading))  # ... and an intruder deleting the kept one is still seen
    assert [f.split(": ")[-1] for f in findings(store)] == ["deleted"]


def test_rows_stored_before_the_chains_are_chained_by_the_migration(database_url):  # noqa: F811
    upgrade(database_url, "0010")
    engine = make_engine(database_url)
    legacy = Store(engine)
    try:
        seed(legacy)
        record = interval_from_document(at(15), 900, load_document({"U1": (1.0, 500.0)}))
        header = {
            "ts": record.ts,
            "level": "",
            "interval_s": 900,
            "losses": "receiving",
            "hash": record.hash,
            "totals": record.totals,
            "estimation": {"version": 2},
            "generation_energy_kwh": 0.0,
            "load_energy_kwh": 0.0,
            "generation_carbon_kg": 0.0,
            "load_carbon_kg": 0.0,
            "loss_carbon_kg": 0.0,
            "created_at": T0,
        }
        old = {k: header[k] for k in ("ts", "level", "interval_s", "hash", "totals", "created_at")}
        with legacy.write() as connection:  # only the columns revision 0010 has
            if legacy.dialect == "postgresql":
                ensure_partitions(connection, TIME_SERIES_TABLES, months_between(T0, T0))
            for minutes, received in ((30, 1), (15, 2), (45, 3)):
                connection.execute(
                    insert(Reading.__table__).values(
                        point_id=POINT,
                        ts=at(minutes),
                        value=f"{minutes}.0",
                        quality="good",
                        received_at=at(received + 60),
                        batch_id="legacy",
                    )
                )
            connection.execute(insert(Interval.__table__).values(**header))
            connection.execute(
                insert(IntervalVersion.__table__).values(
                    **old, version=1, estimation={"version": 1}, superseded_at=T0, reason="late"
                )
            )
            connection.execute(
                insert(AuditEntry.__table__).values(ts=T0, actor="a", action="login", detail={})
            )
            connection.execute(
                insert(Release.__table__).values(
                    period="month",
                    start="2025-03",
                    min_users=3,
                    data_version="v",
                    content={"AH": 1},
                    sha256=canonical_sha256({"AH": 1}),
                    created_at=T0,
                )
            )
    finally:
        engine.dispose()
    opened = Store.open(database_url)  # migrates to the head: 0011 chains what is there
    try:
        report = verify(opened)
        assert report.findings == []
        assert report.links == {"reading": 3, "interval": 2, "release": 1, "audit": 1}
        with opened.read() as connection:
            order = connection.execute(select(Reading.ts).order_by(Reading.chain_seq)).scalars().all()
        assert order == [at(30), at(15), at(45)]  # by arrival
        ingest_batch(opened, reading_batch("after", [(POINT, at(60), "60.0")]))
        assert verify(opened).findings == []
    finally:
        opened.close()


def test_the_canonical_json_is_the_json_encoders_own():
    samples = [
        ["reading", "EM-U1/1", "2025-03-01T00:15:00.000000Z", None, "good", 3, "0" * 64],
        ["audit", 'ü\u2028"\\/\n', {"b": 1.5, "a": [True, None]}, 2**70, -1, 0.1],
    ]
    for parts in samples:
        assert canonical_json(parts) == json.dumps(
            parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )


def test_decimal_text_survives_both_backends():
    samples = ["1E+3", "-0.00", "1.20", "0.0000012", "007.5", "-0", "0", "0.0", "-12.340", "+5", "1e-7", "12"]
    expected = [
        "1000",
        "0.00",
        "1.20",
        "0.0000012",
        "7.5",
        "0",
        "0",
        "0.0",
        "-12.340",
        "5",
        "0.0000001",
        "12",
    ]
    assert [decimal_text(v) for v in samples] == expected
    assert [decimal_text(Decimal(v)) for v in samples] == expected  # the same from the stored Decimal


def test_the_scheduler_signs_checkpoints_with_a_key_made_on_first_use(store, tmp_path):  # noqa: F811
    seeded(store)
    path = tmp_path / "audit.key"
    scheduler = MaintenanceScheduler(
        store,
        purge_delay_s=10**9,
        meter_check_every_s=None,
        checkpoint_key=lambda: load_private_key(path) if path.exists() else write_key(path),
        checkpoint_every_s=600,
    )
    now = datetime.now(UTC)
    assert scheduler.tick(now).checkpoint == 2
    assert scheduler.tick(now + timedelta(seconds=60)).checkpoint is None
    assert scheduler.tick(now + timedelta(seconds=601)).checkpoint == 3
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert (
        verify(store, load_private_key(path).public_key()).findings[0].kind
        == "forged (signed by another key)"
    )


def test_cli_verify_checkpoint_keygen_and_log(sqlite_url, tmp_path, capsys):  # noqa: F811
    key_file = tmp_path / "center.key"
    assert main(["audit", "keygen", "--key-file", str(key_file)]) == 0
    assert main(["audit", "keygen", "--key-file", str(key_file)]) == 2  # never overwritten silently
    opened = Store.open(sqlite_url)
    try:
        seed(opened)
        ingest_batch(opened, reading_batch("b1", [(POINT, at(15), "1.5")]))
        record_audit(opened, "alice", "login", detail={"from": "10.0.0.7"})
    finally:
        opened.close()
    assert main(["audit", "checkpoint", "--database", sqlite_url, "--key-file", str(key_file)]) == 0
    capsys.readouterr()
    pub = str(public_key_path(key_file))
    assert main(["audit", "verify", "--database", sqlite_url, "--public-key", pub]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("audit verify: clean: 1 reading links in 1 chains")
    opened = Store.open(sqlite_url)
    try:
        sql(opened, update(Reading).values(value="2.5"))
    finally:
        opened.close()
    assert main(["audit", "verify", "--database", sqlite_url, "--public-key", pub]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"readings point {POINT} ts 2025-03-01T00:15:00.000000Z (link 1): edited"
    assert out[-1].startswith("audit verify: 1 findings")
    assert main(["audit", "log", "--database", sqlite_url, "--action", "login"]) == 0
    assert '"actor": "alice"' in capsys.readouterr().out


def test_a_rotated_checkpoint_key_keeps_old_checkpoints_verifiable(sqlite_url, tmp_path, capsys):  # noqa: F811
    key_file = tmp_path / "center.key"
    pub = str(public_key_path(key_file))
    checkpoint = ["audit", "checkpoint", "--database", sqlite_url, "--key-file", str(key_file)]
    assert main(["audit", "keygen", "--key-file", str(key_file), "--rotate"]) == 2  # nothing to rotate
    assert main(["audit", "keygen", "--key-file", str(key_file)]) == 0
    opened = Store.open(sqlite_url)
    try:
        seed(opened)
        ingest_batch(opened, reading_batch("b1", [(POINT, at(15), "1.5")]))
    finally:
        opened.close()
    assert main(checkpoint) == 0
    old_lines = public_key_path(key_file).read_text().split()
    assert main(["audit", "keygen", "--key-file", str(key_file), "--rotate"]) == 0
    lines = public_key_path(key_file).read_text().split()
    assert len(lines) == 2 and lines[1] == old_lines[0] and lines[0] != old_lines[0]  # new first, old kept
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert main(checkpoint) == 0  # signed with the new key, chained to the one signed with the old key
    capsys.readouterr()
    assert main(["audit", "verify", "--database", sqlite_url, "--public-key", pub]) == 0
    assert "2 checkpoints" in capsys.readouterr().out
    only_new = tmp_path / "new-only.pub"
    only_new.write_text(lines[0] + "\n")  # without the retired key the old checkpoint is not trusted
    assert main(["audit", "verify", "--database", sqlite_url, "--public-key", str(only_new)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("checkpoints id 1 (") and out[0].endswith("forged (signed by another key)")


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["audit", "verify", "--database", missing]) == 2
    assert main(["audit", "verify", "--database", "nosuch://x"]) == 2
    (tmp_path / "bad.pub").write_text("not a key\n")
    assert main(["audit", "verify", "--database", missing, "--public-key", str(tmp_path / "bad.pub")]) == 2
    assert main(["audit", "checkpoint", "--database", missing, "--key-file", str(tmp_path / "no.key")]) == 2
    old = tmp_path / "old.db"
    upgrade(f"sqlite:///{old}", "0010")  # a database from before the chains
    assert main(["audit", "verify", "--database", f"sqlite:///{old}"]) == 2
    assert main(["audit", "verify", "--database", "postgresql+psycopg://u:s3cret@127.0.0.1:1/x"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 6 and all(line.startswith("carbonflow audit: error: ") for line in lines)
    assert "migrated?" in lines[4] and "s3cret" not in lines[5]
    assert "Traceback" not in "".join(lines)


def test_every_api_write_of_a_user_is_audited_with_its_address(sqlite_url):  # noqa: F811
    opened = Store.open(sqlite_url)
    create_user(opened, "alice", "right-password", "admin")
    app = create_app(CenterSettings(database_url=sqlite_url, maintenance_period_s=0), store=opened)
    try:
        with TestClient(app) as client:
            token = client.post("/api/v1/login", json={"name": "alice", "password": "right-password"})
            headers = {"Authorization": f"Bearer {token.json()['token']}"}
            assert client.post("/api/v1/users", json={"name": "bob"}, headers=headers).status_code == 422
            client.get("/api/v1/users", headers=headers)  # a read: not audited
        entries = list_audit(opened, action="http.")
        assert [(e["actor"], e["action"], e["object"], e["detail"]) for e in entries] == [
            ("alice", "http.post", "/api/v1/users", {"status": 422, "from": "testclient"})
        ]
        assert verify(opened).findings == []
    finally:
        opened.close()


def test_concurrent_batches_on_the_same_points_keep_every_chain_whole(store):  # noqa: F811
    seed(store)
    # one batch first: the month's partition exists before the race (making it concurrently is another
    # matter — two first writers of a month can collide on CREATE TABLE, outside the chains)
    ingest_batch(store, reading_batch("warm-up", [(POINT, at(0), "0"), ("RTU-B1/1", at(0), "0")]))

    def send(sender: int) -> None:
        for k in range(6):  # overlapping (point, ts) between senders: the first write wins, once
            minutes = [k + 1, k + 2] if sender % 2 else [k + 2, k + 3]
            readings = [(p, at(m), f"{sender}.{m}") for p in (POINT, "RTU-B1/1") for m in minutes]
            ingest_batch(store, reading_batch(f"s{sender}-{k}", readings, seq=k))

    threads = [threading.Thread(target=send, args=(sender,)) for sender in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = verify(store, KEY.public_key())
    assert report.findings == []
    assert report.links["reading"] == 2 * 9  # minutes 0..8 of two points, each stored once
