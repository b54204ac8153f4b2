"""absl flags generated from a config dataclass, and back.

Each field of the dataclass becomes a flag of the same name, typed after
its default and documented by its `help` metadata, so a CLI, a flag file
and `kskel.tune` all speak the same names.
"""

import dataclasses

from absl import flags


def define_flags(config_cls, flag_values=flags.FLAGS):
    """Defines one flag per field of `config_cls`."""
    for field in dataclasses.fields(config_cls):
        default = field.default
        text = field.metadata.get("help", field.name)
        if isinstance(default, bool):
            flags.DEFINE_bool(
                field.name, default, text, flag_values=flag_values
            )
        elif isinstance(default, int):
            flags.DEFINE_integer(
                field.name, default, text, flag_values=flag_values
            )
        elif isinstance(default, float):
            flags.DEFINE_float(
                field.name, default, text, flag_values=flag_values
            )
        elif isinstance(default, tuple):
            flags.DEFINE_list(
                field.name,
                [str(v) for v in default],
                text,
                flag_values=flag_values,
            )
        else:
            flags.DEFINE_string(
                field.name, default, text, flag_values=flag_values
            )


def config_from_flags(config_cls, flag_values=flags.FLAGS):
    """Builds a `config_cls` from parsed flags."""
    values = {}
    for field in dataclasses.fields(config_cls):
        value = flag_values[field.name].value
        if isinstance(field.default, tuple):
            value = tuple(int(v) for v in value)
        values[field.name] = value
    return config_cls(**values)


def to_flagfile(config):
    """The config as absl flag-file text, one `--name=value` per line."""
    lines = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, bool):
            lines.append(f"--{'' if value else 'no'}{field.name}")
        elif isinstance(value, tuple):
            lines.append(f"--{field.name}={','.join(str(v) for v in value)}")
        else:
            lines.append(f"--{field.name}={value}")
    return "\n".join(lines) + "\n"


def config_from_flagfile(config_cls, path, **overrides):
    """Builds a `config_cls` from an absl flag file plus field overrides.

    Nested `--flagfile=` lines are resolved relative to the working
    directory, as absl does.
    """
    values = flags.FlagValues()
    define_flags(config_cls, values)
    values(["kskel", f"--flagfile={path}"])
    return dataclasses.replace(
        config_from_flags(config_cls, values), **overrides
    )
