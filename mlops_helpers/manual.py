"""The hand-written steps of notebooks 01 (manual ETL) and 02 (manual deployment).

Those notebooks type these steps in their cells, because there the hand-written steps
*are* the lesson. They are gathered here only because notebook 09 replays them, side by
side with the automated path, over a whole matrix of faults. Do not reuse them anywhere
else: they are the baseline, not the way to do it.

Lockstep, checked by ``tests/notebooks/test_hygiene.py``: every function, class and
constant defined both here and in notebook 01 or 02 has the same code (the same AST,
docstrings included; comments and layout may differ), except these, adapted because
they read a global of the notebook that became an argument here: ``manual_step`` (the
checklist), ``make_model`` (the numeric columns), ``held_out_auc`` (the features and
labels), ``ScoringHandler`` (the model file), ``ask_server`` (the server's URL).
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_helpers import data, etl, training

# ---------------------------------------------------------------- notebook 01: manual ETL

OUTPUT_NAME = "viewability.csv"  # the file the manual run writes
COLUMNS = [
    "impression_id",
    "ts",
    "placement_id",
    "site_category",
    "ad_format",
    "position",
    "device",
    "ad_width",
    "ad_height",
    "page_load_ms",
    "scroll_depth",
    "time_on_page_s",
    "viewable",
]
# The mark each fault leaves in the manual output (notebook 01, section 4).
FAULT_DAMAGE = {
    "schema_change": "page_load_ms = 0",
    "duplicates": "duplicated id",
    "nulls": "placement/device = 0",
    "out_of_range": "scroll_depth > 1",
    "late_rows": "late row",
    "empty_day": "empty day",
    "unknown_category": "unknown category",
}


# The steps of notebook 02's weekly deployment, in the order a person performs them; 02
# checks its checklist against this, so 05 and 09 can count them without rerunning 02.
DEPLOYMENT_CHECKLIST = (
    "get the training table",
    "sample and split the rows (no seed)",
    "fit the model",
    "check the held-out AUC by eye",
    "pickle the model into production",
    "start the hand-written server",
    "query the server by hand",
    "stop the server",
)


def tick(checklist: list[dict], day: str, step: str, table: pd.DataFrame) -> None:
    """Record one manual step and the rows it left."""
    checklist.append({"day": day, "step": step, "rows": len(table)})


def etl_day_by_hand(
    raw_root: Path, day: dt.date, placements: pd.DataFrame, checklist: list[dict]
) -> pd.DataFrame:
    """One day of manual ETL: read, join, select, fill, stamp the day."""
    name = day.isoformat()
    folder = raw_root / f"day={name}"
    impressions = pd.read_csv(folder / "impressions.csv", parse_dates=["ts"])
    tick(checklist, name, "read impressions CSV", impressions)
    labels = pd.read_csv(folder / "labels.csv")
    tick(checklist, name, "read labels CSV", labels)
    table = impressions.merge(placements, on="placement_id", how="left")
    tick(checklist, name, "join placements (left)", table)
    table = table.merge(labels, on="impression_id", how="inner")
    tick(checklist, name, "join labels (inner)", table)
    table = table.reindex(columns=COLUMNS)
    tick(checklist, name, "select expected columns", table)
    # fill gaps with 0 to keep the model happy; pandas 3 warns when a 0 goes into a
    # text column, and casting to object first (as the warning suggests) silences it
    table = table.astype(object).fillna(0).infer_objects()
    tick(checklist, name, "fill missing values with 0", table)
    table.insert(0, "day", name)
    tick(checklist, name, "stamp the extract's day", table)
    return table


def run_by_hand(dataset: etl.Dataset, target: Path, checklist: list[dict]) -> pd.DataFrame:
    """The whole manual run: placements, every day, concatenate, write one CSV."""
    placements = pd.read_csv(dataset.raw / "placements.csv")
    tick(checklist, "-", "read placements CSV", placements)
    days = [etl_day_by_hand(dataset.raw, day, placements, checklist) for day in dataset.days]
    table = pd.concat(days, ignore_index=True)
    tick(checklist, "-", "concatenate days", table)
    table.to_csv(target, index=False)
    tick(checklist, "-", "write output CSV", table)
    return table


def damage_masks(table: pd.DataFrame, placements: pd.DataFrame) -> dict[str, pd.Series]:
    """One boolean mask per kind of silent damage: True marks a wrong row."""
    filled = table["placement_id"].astype(str).eq("0") | table["device"].astype(str).eq("0")
    unknown = ~table["device"].isin(data.DEVICES) | ~table["placement_id"].isin(
        placements["placement_id"]
    )
    ts_day = pd.to_datetime(table["ts"]).dt.strftime("%Y-%m-%d")
    return {
        "duplicated id": table["impression_id"].duplicated(),
        "page_load_ms = 0": pd.to_numeric(table["page_load_ms"]).eq(0),
        "placement/device = 0": filled,
        "scroll_depth > 1": pd.to_numeric(table["scroll_depth"]).gt(1),
        "late row": ts_day.ne(table["day"].astype(str)),
        "unknown category": unknown & ~filled,
    }


def damage_counts(table: pd.DataFrame, placements: pd.DataFrame, days: list[str]) -> dict:
    """Rows per kind of damage, plus the days that came out empty."""
    found = {k: int(m.sum()) for k, m in damage_masks(table, placements).items()}
    found["empty day"] = sum(1 for d in days if not table["day"].astype(str).eq(d).any())
    return found


# ---------------------------------------------------------- notebook 02: manual deployment

FEATURES, TARGET = list(training.FEATURES), training.TARGET


@contextmanager
def manual_step(checklist: list[dict], name: str) -> Iterator[None]:
    """Time one manual step and tick it off the checklist (run again, it replaces its tick)."""
    started = time.perf_counter()
    yield
    tick = {"step": name, "seconds": time.perf_counter() - started}
    again = [i for i, done in enumerate(checklist) if done["step"] == name]
    if again:
        checklist[again[0]] = tick
    else:
        checklist.append(tick)


def make_model(numeric: tuple[str, ...] = training.NUMERIC_FEATURES) -> Pipeline:
    """Scale the numbers, one-hot the categories, then a logistic regression."""
    features = ColumnTransformer(
        [
            ("num", StandardScaler(), list(numeric)),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(training.CATEGORICAL_FEATURES)),
        ]
    )
    return Pipeline([("features", features), ("model", LogisticRegression(max_iter=200))])


def split_by_hand(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A quick 80% sample, then a 75/25 split; no seed anywhere."""
    sample = df.sample(frac=0.8)  # no random_state: "it's just a sample"
    return train_test_split(sample, test_size=0.25, random_state=None)


def held_out_auc(model: Pipeline, test: pd.DataFrame, features: list[str] = FEATURES) -> float:
    """ROC AUC on the test rows."""
    proba = model.predict_proba(test[features])[:, 1]
    return float(roc_auc_score(test[TARGET], proba))


class ScoringHandler(BaseHTTPRequestHandler):
    """POST {"rows": [...]} -> {"probabilities": [...]}, from whatever model.pkl holds now."""

    def do_POST(self) -> None:
        try:
            rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["rows"]
            with open(self.server.model_file, "rb") as f:
                current = pickle.load(f)  # "hot reload": the newest file, on every request
            proba = current.predict_proba(pd.DataFrame(rows)[FEATURES])[:, 1]
            status, body = 200, {"probabilities": proba.tolist()}
        except Exception as exc:  # answer with the error instead of hanging up
            status, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        """Stay quiet: the default logs every request to stderr."""


@dataclass
class HandServer:
    """The hand-written server of notebook 02: a thread of this process on 127.0.0.1."""

    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        """Where to POST rows (the port differs per run: do not print it)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/predict"

    def stop(self) -> None:
        """Stop serving, close the socket, wait for the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_server(model_file: Path) -> HandServer:
    """Serve whatever ``model_file`` holds, on a free loopback port (port 0: any free port)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScoringHandler)
    server.model_file = model_file
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    return HandServer(server, thread)


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def ask_server(url: str, rows: pd.DataFrame) -> dict:
    """POST rows as JSON; return the HTTP status and the decoded answer."""
    body = json.dumps({"rows": rows[FEATURES].to_dict(orient="records")}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with _opener.open(request, timeout=30) as response:
            return {"status": response.status, **json.loads(response.read())}
    except urllib.error.HTTPError as err:
        with err:
            return {"status": err.code, **json.loads(err.read())}


def retrain_and_copy(
    table: pd.DataFrame,
    model_file: Path,
    checklist: list[dict],
    numeric: tuple[str, ...] = training.NUMERIC_FEATURES,
) -> Pipeline:
    """The weekly routine of notebook 02: retrain, glance at the AUC, copy over model.pkl.

    ``numeric`` names the numeric columns the training code reads (a feature script that
    renamed one changes it); the server keeps asking with the columns it always sent.
    """
    features = [*numeric, *training.CATEGORICAL_FEATURES]
    with manual_step(checklist, "sample and split the rows (no seed)"):
        train, test = split_by_hand(table)
    with manual_step(checklist, "fit the model"):
        model = make_model(numeric).fit(train[features], train[TARGET])
    with manual_step(checklist, "check the held-out AUC by eye"):
        held_out_auc(model, test, features)
    with manual_step(checklist, "pickle the model into production"), open(model_file, "wb") as f:
        pickle.dump(model, f)
    return model
