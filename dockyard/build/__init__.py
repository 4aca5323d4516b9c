"""build: ``docker build`` for dockyard. For now only the language layer exists.

    from dockyard.build import dockerfile
    df = dockerfile.parse(text, filename="Dockerfile")   # -> Dockerfile(stages, global_args, ...)
    stage = dockerfile.validate_stages(df, target=None)  # --target and stage refs (COPY --from)
    meta = dockerfile.global_scope(df, build_args)        # ARGs before FROM, for FROM lines
    for inst, env in dockerfile.stage_scopes(stage, image_env, meta, build_args):
        words = inst.expanded(env)                        # Docker's substitution rules per instruction

    from dockyard.build import dockerignore
    ignored = dockerignore.matcher(lines)                 # ignored("dir/file") -> bool
    patterns = dockerignore.parse(lines)
    dockerignore.can_skip_dir(patterns, "dir")            # walk shortcut, exceptions respected

Both modules are pure (text in, values or DockerfileError/InvalidArgument out, no I/O); the
builder that runs RUN steps, caches layers and reads the context comes later, on top of the engine.
tests/build/fixtures hold cases recorded from a real Docker daemon that both are checked against.
"""

from dockyard.build.dockerfile import (
    Dockerfile, DockerfileError, Heredoc, Instruction, Mount, Stage, expand, parse,
    split_and_expand,
)

__all__ = ["Dockerfile", "DockerfileError", "Heredoc", "Instruction", "Mount", "Stage", "expand",
           "parse", "split_and_expand"]
