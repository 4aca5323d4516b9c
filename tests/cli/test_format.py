"""Pure tests of the CLI's output formatting: go-units, tabwriter, the Go-template subset, ps rows."""

import json

import pytest

from dockyard.cli.containers import PS_HEADERS, api_timestamp, format_ports, ps_row, start_exit_code
from dockyard.cli.format import (Template, TemplateError, ellipsis, go_quote, human_duration,
                                 human_size, ram_in_bytes, render_rows, tabwrite, truncate_id)
from dockyard.cli.images import image_rows


@pytest.mark.parametrize("secs,want", [
    (0, "Less than a second"), (0.9, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
    (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"), (59 * 60, "59 minutes"),
    (3600, "About an hour"), (5399, "About an hour"), (5400, "2 hours"), (47 * 3600, "47 hours"),
    (48 * 3600, "2 days"), (13 * 86400, "13 days"), (14 * 86400, "2 weeks"),
    (60 * 86400, "2 months"), (365 * 86400, "12 months"), (2 * 365 * 86400, "2 years"),
])
def test_human_duration(secs, want):
    assert human_duration(secs) == want


@pytest.mark.parametrize("size,want", [
    (0, "0B"), (100, "100B"), (999, "999B"), (1000, "1kB"), (1234, "1.23kB"),
    (4261550, "4.26MB"), (1980000, "1.98MB"), (10 ** 9, "1GB"), (123456789012, "123GB"),
])
def test_human_size(size, want):
    assert human_size(size) == want


def test_ram_in_bytes():
    assert ram_in_bytes("64m") == 64 << 20
    assert ram_in_bytes("1g") == 1 << 30
    assert ram_in_bytes("512K") == 512 << 10
    assert ram_in_bytes("100") == 100
    assert ram_in_bytes("1.5g") == int(1.5 * (1 << 30))
    with pytest.raises(ValueError):
        ram_in_bytes("lots")


def test_strings():
    assert ellipsis("sh -c 'echo started; sleep 100'", 20) == "sh -c 'echo started…"
    assert ellipsis("short", 20) == "short"
    assert truncate_id("sha256:" + "ab" * 32) == "abababababab"
    assert go_quote('sh -c "x"\n') == '"sh -c \\"x\\"\\n"'


def test_tabwriter_pads_like_docker():
    text = "CONTAINER ID\tIMAGE\tNAMES\nabc\tbusybox\tweb\n"
    assert tabwrite(text) == ("CONTAINER ID   IMAGE     NAMES\n"
                              "abc            busybox   web\n")


def test_tabwriter_blocks_and_minwidth():
    # A line without tabs ends the column block, as in Go.
    assert tabwrite("a\tb\nplain\nlonger-cell\tc\n", minwidth=0, padding=1) == "a b\nplain\nlonger-cell c\n"
    assert tabwrite("UID\tPID\nroot\t1\n", minwidth=20) == "UID" + " " * 17 + "PID\nroot" + " " * 16 + "1\n"


DATA = {"Name": "/web", "State": {"Status": "running", "Pid": 12, "Running": True},
        "Config": {"Labels": {"a": "1", "b": "<x>"}, "Cmd": ["sh", "-c", "true"], "Env": None},
        "Mounts": [{"Source": "/a"}, {"Source": "/b"}]}


@pytest.mark.parametrize("tmpl,want", [
    ("{{.State.Status}}", "running"),
    ("{{.Name}}", "/web"),
    ("{{.Nope}}", "<no value>"),
    ("{{.Nope.Deeper}}", "<no value>"),
    ("{{.Config.Env}}", "<nil>"),
    ("{{.State.Running}}", "true"),
    ("{{json .State}}", '{"Pid":12,"Running":true,"Status":"running"}'),
    ("{{json .Config.Labels}}", '{"a":"1","b":"\\u003cx\\u003e"}'),
    ("{{.Config.Labels}}", "map[a:1 b:<x>]"),
    ("{{.Config.Cmd}}", "[sh -c true]"),
    ('{{index .Config.Labels "a"}}', "1"),
    ("{{index .Config.Cmd 1}}", "-c"),
    ("{{.State.Status | upper}}", "RUNNING"),
    ('{{join .Config.Cmd " "}}', "sh -c true"),
    ("{{range .Mounts}}{{.Source}};{{end}}", "/a;/b;"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{with .State}}{{.Pid}}{{end}}", "12"),
    ("a {{- .Name -}} b", "a/webb"),
    ("{{len .Mounts}}", "2"),
])
def test_template(tmpl, want):
    assert Template(tmpl).render(DATA) == want


@pytest.mark.parametrize("bad", ["{{nosuchfunc .X}}", "{{if .X}}unterminated", "{{end}}", '{{"x" .Y}}'])
def test_template_errors_are_one_line(bad):
    with pytest.raises(TemplateError) as e:
        Template(bad).render(DATA)
    assert "\n" not in str(e.value)


def test_template_callable_field():
    row = {"Label": lambda k: {"app": "x"}.get(k, "")}
    assert Template('{{.Label "app"}}').render(row) == "x"


CONTAINER = {
    "Id": "433f49f5b731" + "0" * 52, "Names": ["/web"], "Image": "busybox",
    "ImageID": "sha256:" + "9b" * 32, "Command": "sh -c 'echo started; sleep 100'",
    "Created": 1000, "Ports": [], "Labels": {"app": "x"}, "State": "running",
    "Status": "Up 2 minutes", "HostConfig": {"NetworkMode": "default"},
    "NetworkSettings": {"Networks": {"bridge": {}}},
    "Mounts": [{"Type": "volume", "Name": "v1", "Driver": "local"}],
}


def test_ps_table_matches_docker_layout():
    out = render_rows(
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
        [ps_row(CONTAINER, now=1000 + 150)], PS_HEADERS)
    assert out == (
        "CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS         PORTS     NAMES\n"
        "433f49f5b731   busybox   \"sh -c 'echo started…\"   2 minutes ago   Up 2 minutes             web\n")


def test_ps_row_fields():
    row = ps_row(CONTAINER, now=1001)
    assert row["Labels"] == "app=x" and row["Networks"] == "bridge" and row["LocalVolumes"] == "1"
    assert row["Mounts"] == "v1" and row["State"] == "running" and row["Size"] == "0B"
    full = ps_row(dict(CONTAINER, SizeRw=12, SizeRootFs=4261550), trunc=False, now=1001)
    assert full["ID"] == CONTAINER["Id"] and full["Size"] == "12B (virtual 4.26MB)"
    assert json.loads(Template("{{json .}}").render(ps_row(CONTAINER)))["Names"] == "web"


def test_ports_and_image_rows():
    assert format_ports([{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                         {"PrivatePort": 443, "Type": "tcp"}]) == "443/tcp, 0.0.0.0:8080->80/tcp"
    ranged = [{"IP": "0.0.0.0", "PrivatePort": p, "PublicPort": p, "Type": "tcp"} for p in (8000, 8001, 8002)]
    assert format_ports(ranged + [{"PrivatePort": 53, "Type": "udp"}, {"PrivatePort": 54, "Type": "udp"},
                                  {"IP": "::", "PrivatePort": 80, "PublicPort": 32768, "Type": "tcp"}]) == \
        "53-54/udp, 0.0.0.0:8000-8002->8000-8002/tcp, [::]:32768->80/tcp"
    rows = image_rows([{"Id": "sha256:" + "9b" * 32, "RepoTags": ["busybox:latest", "reg:5000/x:1"],
                        "RepoDigests": [], "Created": 0, "Size": 1980000},
                       {"Id": "sha256:" + "aa" * 32, "RepoTags": [], "Created": 0, "Size": 1}])
    assert [(r["Repository"], r["Tag"], r["ID"], r["Size"]) for r in rows] == [
        ("busybox", "latest", "9b9b9b9b9b9b", "1.98MB"), ("reg:5000/x", "1", "9b9b9b9b9b9b", "1.98MB"),
        ("<none>", "<none>", "aaaaaaaaaaaa", "1B")]


def test_start_error_exit_codes():
    assert start_exit_code('exec: "foo": executable file not found in $PATH') == 127
    assert start_exit_code("open /nope: no such file or directory") == 127
    assert start_exit_code('exec: "/etc": permission denied') == 126
    assert start_exit_code("cgroup: something else") == 125


def test_api_timestamp():
    assert api_timestamp("10m", now=1000.0) == "400"
    assert api_timestamp("1h30m", now=10000.0) == "4600"
    assert api_timestamp("1700000000") == "1700000000"
    assert api_timestamp("1700000000.5") == "1700000000.5"
    assert api_timestamp("2023-11-14T22:13:20Z") == "1700000000.000000000"
    assert api_timestamp("2023-11-14T22:13:20.25+00:00") == "1700000000.250000000"
    from dockyard.cli.common import CLIError
    with pytest.raises(CLIError):
        api_timestamp("yesterday")
