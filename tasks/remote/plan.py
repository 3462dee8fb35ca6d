"""What a run changes, decided from the host's facts and the settings wanted: pure functions (no
host, no HOME, no clock), so that a table of (facts, wanted) -> changes tests them. The actions
gather the facts (facts.Instance), ask here, and make the changes through Run.change()."""

from .files import diff, json_text

INHERITED = "the default instance's"  # where a new instance's password came from


def password_step(stored, given, inherited, salted, dry):
    """What setup does about the password, from the hash STORED there (None without one), the
    hash GIVEN by the client (None if none), the default instance's hash INHERITED by a new one:
    {"ask": "password" | "salt" | None, "salt": the stored hash's salt to hash with, "new": the
    hash to write (None: keep the stored one), "source": where a new one came from}."""
    new, source = given, ""
    if not new and not stored and inherited:
        new, source = inherited, INHERITED
    if not new and not stored and not dry:
        return {"ask": "password", "salt": None, "new": None, "source": ""}
    if new and stored and not salted:
        # the salt of the stored hash (up to SALT in argon2:$argon2id$v=..$m=..,t=..,p=..$SALT$DIGEST):
        # the client hashes the password given with it, so that the same password is seen as such;
        # the digest never leaves the host
        parts = stored.split("$")
        return {"ask": "salt", "salt": "$".join(parts[:5]) if len(parts) == 6 else "", "new": None, "source": ""}
    if new and new == stored:
        new = None
    return {"ask": None, "salt": None, "new": new, "source": source}


def server_step(recorded, alive, wanted):
    """"keep" when the server RECORDED (the state file) runs (ALIVE) as WANTED says: the same
    fingerprint of what Jupyter reads, launcher, port asked for, batch options, and no upgrade of
    Jupyter since, the same container image (its id: another file or image under the same name is
    another image); else "replace". WANTED: fingerprint, launcher, requested_port, job_options
    (None for a launcher that is no batch job), version, upgraded (setup --install --upgrade ran),
    image_id (None without a container)."""
    upgraded = wanted["upgraded"] and recorded.get("version") != wanted["version"]
    # records written before the key's rename (0.1.0's, on users' hosts) name the options "sbatch":
    # the same options under that name are no change, and an upgrade restarts no job for it
    options = recorded["job_options"] if "job_options" in recorded else recorded.get("sbatch")
    same = (recorded.get("fingerprint") == wanted["fingerprint"] and recorded.get("launcher") == wanted["launcher"]
            and recorded.get("requested_port") == wanted["requested_port"]
            and (wanted["job_options"] is None or options == wanted["job_options"])
            and recorded.get("image_id") == wanted.get("image_id"))
    return "keep" if alive and not upgraded and same else "replace"


def image_changed(recorded, alive, wanted):
    """Whether the running server's container image, under the same name, is not the one WANTED
    now (rebuilt, pulled or imported again since it started): the reason setup gives for a
    restart that no setting explains."""
    return bool(alive and wanted.get("image_id") and recorded.get("container") == wanted.get("image")
                and recorded.get("image_id") not in (None, wanted["image_id"]))


def config_steps(now, wanted):
    """The changes that make the configuration files what WANTED says, from NOW (what is there):
    a list of {"what", "detail", "diff", "write": [(name, text)], "remove": [path]}, names
    relative to the instance's directory.

    NOW: settings_text (settings.sh, None without), legacy_text (the settings block of an older
    run.sh, None without), settings (as read from either), config_text and config (the kind's
    settings file, as text and as JSON), others (the paths of other kinds' settings files).
    WANTED: settings_text, settings, config (JSON), config_name (config/NAME)."""
    steps = []
    text = wanted["settings_text"]
    if now["settings"] != wanted["settings"]:
        old = now["settings_text"] if now["settings_text"] is not None else now["legacy_text"]
        steps.append({"what": "settings", "detail": "", "diff": diff(old, text, "settings.sh"),
                      "write": [("settings.sh", text)], "remove": []})
    elif now["settings_text"] != text:
        steps.append({"what": "tool", "detail": "settings.sh", "diff": [], "write": [("settings.sh", text)], "remove": []})
    if now["config"] != wanted["config"] or now["others"]:
        name = wanted["config_name"]
        new = json_text(wanted["config"])
        steps.append({"what": "config", "detail": name, "diff": diff(now["config_text"], new, name),
                      "write": [(name, new)], "remove": list(now["others"])})
    return steps


def tool_steps(now, wanted):
    """This tool's own scripts: NOW {name: text or None}, WANTED [(name, text, mode)] -> the
    changes, "tool" for a file replaced (an earlier version's), "tool_added" for a new one."""
    return [{"what": "tool" if now.get(name) is not None else "tool_added", "detail": name, "name": name, "text": text,
             "mode": mode} for name, text, mode in wanted if now.get(name) != text]
