"""Format detection, normalisation and bad-row locations over the fixture corpus."""

import json
from pathlib import Path

import pytest

from engine.data import dataset, detect_file_format, has_validation_split, inspect, load_examples, open_source
from engine.errors import DataError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.mark.parametrize(
    "name, fmt, rows",
    [
        ("messages.jsonl", "messages", 5),
        ("messages_bom_crlf.jsonl", "messages", 3),
        ("sharegpt.json", "sharegpt", 3),
        ("alpaca.json", "alpaca", 3),
        ("alpaca.csv", "alpaca", 3),
        ("prompt_completion.jsonl", "prompt_completion", 2),
        ("prompt_completion_chat.jsonl", "prompt_completion", 2),
        ("text.jsonl", "text", 3),
        ("text.tsv", "text", 2),
        ("wrapped.json", "prompt_completion", 2),
    ],
)
def test_valid_files_are_detected_and_clean(name, fmt, rows):
    report = inspect(str(FIX / name))
    assert (report.format, report.rows, report.valid_rows, report.error_count) == (fmt, rows, rows, 0)
    examples = load_examples(str(FIX / name))
    assert len(examples) == rows
    for ex in examples:
        if fmt == "text":
            assert set(ex) == {"text"} and ex["text"].strip()
        else:
            roles = [m["role"] for m in ex["messages"]]
            assert set(roles) <= {"system", "user", "assistant"} and "assistant" in roles
            assert all(isinstance(m["content"], str) and m["content"] for m in ex["messages"])


def test_messages_keep_weights_and_join_text_parts():
    ex = load_examples(str(FIX / "messages.jsonl"))
    assert [m.get("weight") for m in ex[2]["messages"]] == [None, None, 0, None, 1]
    assert ex[4]["messages"][0]["content"] == "Do you ship to Norway?"


def test_sharegpt_alpaca_and_prompt_completion_normalise_to_chat():
    share = load_examples(str(FIX / "sharegpt.json"))
    assert share[0]["messages"][0] == {"role": "system", "content": "You answer customer questions about orders in one short sentence."}
    assert [m["role"] for m in share[1]["messages"]] == ["user", "assistant", "user", "assistant"]
    alpaca = load_examples(str(FIX / "alpaca.json"))
    assert alpaca[0]["messages"][0]["content"] == "Classify the ticket as refund, shipping or account.\n\nMy parcel never came."
    assert alpaca[1]["messages"][0]["content"] == "Say hello to a new customer."  # empty input: no blank tail
    assert [m["role"] for m in alpaca[2]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    csv_rows = load_examples(str(FIX / "alpaca.csv"))
    assert csv_rows[1]["messages"][1]["content"] == "We are sorry for the delay.\nYour order ships today."
    plain = load_examples(str(FIX / "prompt_completion.jsonl"))
    assert plain[0]["messages"] == [
        {"role": "user", "content": "Ticket: my order is late.\nCategory:"},
        {"role": "assistant", "content": " shipping"},
    ]
    chat = load_examples(str(FIX / "prompt_completion_chat.jsonl"))
    # an assistant turn inside the prompt is context, not trained
    assert [(m["role"], m.get("weight")) for m in chat[1]["messages"]] == [
        ("user", None), ("assistant", 0), ("user", None), ("assistant", None)]


def test_bad_rows_are_located_by_line():
    report = inspect(str(FIX / "bad_rows.jsonl"))
    assert report.format == "messages"
    assert report.rows == 13 and report.valid_rows == 2  # the blank line 7 is not a row
    got = {p.where: p.message for p in report.errors}
    assert sorted(got) == [2, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14]
    assert got[2] == "message 2 has role 'bot'; roles must be system, user, assistant or tool"
    assert "empty content" in got[3]
    assert "a number as content" in got[4]
    assert "no assistant message" in got[5]
    assert got[6].startswith("is not valid JSON")
    assert "not an object" in got[8]
    assert "weight must be 0 or 1" in got[9]
    assert got[10].startswith("is alpaca but the file is messages")
    assert "'question', 'answer'" in got[11] and "match no format" in got[11]
    assert "weight 0" in got[13]
    assert "must be a list of messages" in got[14]
    assert all(p.unit == "line" for p in report.errors)
    assert any("mixes formats" in w for w in report.warnings)
    as_json = report.as_json()
    assert as_json["errors"][0] == {"line": 2, "row": 2, "message": got[2]}


def test_bad_records_in_a_json_array_are_located_by_record():
    report = inspect(str(FIX / "bad_records.json"))
    assert report.format == "sharegpt"
    assert [(p.unit, p.where) for p in report.errors] == [("record", 2), ("record", 3), ("record", 4)]
    assert "from 'robot'" in report.errors[0].message


def test_cut_short_array_and_ragged_csv():
    cut = inspect(str(FIX / "cut_short.json"))
    assert (cut.rows, cut.valid_rows, cut.errors[0].where) == (3, 2, 3)
    assert "line 4" in cut.errors[0].message
    ragged = inspect(str(FIX / "ragged.csv"))
    assert [(p.where, p.message) for p in ragged.errors] == [
        (3, "has 3 fields but the header has 2"), (4, "has an empty 'prompt'")]


def test_a_bad_byte_in_one_row_is_that_rows_problem():
    report = inspect(str(FIX / "latin1_row.jsonl"))
    assert [(p.where, p.message) for p in report.errors] == [(2, "is not UTF-8 text (byte 0xe9 at column 14)")]


def test_load_examples_names_the_first_bad_row_and_the_count():
    with pytest.raises(DataError) as err:
        load_examples(str(FIX / "bad_rows.jsonl"))
    msg = str(err.value)
    assert msg.startswith(f"{FIX / 'bad_rows.jsonl'}:2: message 2 has role 'bot'")
    assert "11 bad rows in all" in msg and "tunedeck data inspect" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "name, words",
    [
        ("empty.jsonl", "is empty"),
        ("blank.jsonl", "is empty"),
        ("binary.jsonl", "not a text file"),
        ("latin1.jsonl", "not UTF-8"),
        ("utf16.jsonl", "UTF-16"),
        ("pretty.jsonl", "pretty-printed"),
        ("columns.csv", "match no format"),
        ("object.json", "match no format"),
        ("preference.jsonl", "preference tuning"),
        ("notes.txt", "not a data file"),
    ],
)
def test_unusable_files_fail_with_one_sentence(name, words):
    # read for supervised fine-tuning: preference pairs are refused (for DPO they are the data)
    with pytest.raises(DataError) as err:
        inspect(str(FIX / name), objective="sft")
    assert words in str(err.value)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    with pytest.raises(DataError):
        dataset.load_examples(str(FIX / name), objective="sft")


def test_missing_paths_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_examples(str(tmp_path / "nope.jsonl"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder with no data"):
        load_examples(str(tmp_path / "empty"))


def test_demo_has_both_splits():
    assert has_validation_split("demo")
    assert len(load_examples("demo")) == 340
    assert len(load_examples("demo", split="validation")) == 60
    assert not has_validation_split(str(FIX / "messages.jsonl"))
    with pytest.raises(DataError, match="no 'validation' split"):
        load_examples(str(FIX / "messages.jsonl"), split="validation")


def test_parquet_and_save_to_disk_folders(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (FIX / "prompt_completion.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows * 3), tmp_path / "pc.parquet", row_group_size=2)
    assert detect_file_format(open_source(str(tmp_path / "pc.parquet"))) == "prompt_completion"
    assert len(load_examples(str(tmp_path / "pc.parquet"))) == 6
    src = open_source(str(tmp_path / "pc.parquet"))
    assert src.get(5).record["completion"] == " refund" and src.get(5).where == 6

    msgs = [json.loads(line) for line in (FIX / "messages.jsonl").read_text().splitlines()]
    for m in msgs:  # datasets needs one schema: drop the text-part row and the weights
        for x in m["messages"]:
            x.pop("weight", None)
    msgs = msgs[:4]
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_list(msgs[:3]),
        "validation": datasets.Dataset.from_list(msgs[3:]),
    })
    dd.save_to_disk(str(tmp_path / "saved"))
    assert has_validation_split(str(tmp_path / "saved"))
    assert len(load_examples(str(tmp_path / "saved"))) == 3
    assert load_examples(str(tmp_path / "saved"), split="validation")[0]["messages"][0]["content"] == "Cancel D4004 please."
    datasets.Dataset.from_list(msgs).save_to_disk(str(tmp_path / "single"))
    assert not has_validation_split(str(tmp_path / "single"))
    assert len(load_examples(str(tmp_path / "single"))) == 4
    with pytest.raises(DataError, match="no 'test' split"):
        load_examples(str(tmp_path / "saved"), split="test")


def test_a_folder_of_plain_files_is_split_by_name(tmp_path):
    (tmp_path / "train.jsonl").write_text((FIX / "text.jsonl").read_text())
    (tmp_path / "validation.jsonl").write_text('{"text": "held out"}\n')
    assert has_validation_split(str(tmp_path))
    assert len(load_examples(str(tmp_path))) == 3
    assert load_examples(str(tmp_path), split="validation") == [{"text": "held out"}]


def test_hub_id_offline_is_one_sentence():
    with pytest.raises(DataError) as err:
        load_examples("someone/not-a-real-dataset-xyz")
    assert "offline" in str(err.value) and "\n" not in str(err.value)
