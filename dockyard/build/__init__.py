"""build: ``docker build`` for dockyard: a pure language layer and a builder on top of the engine.

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

Both modules are pure (text in, values or DockerfileError/InvalidArgument out, no I/O).

    from dockyard.build.builder import Builder
    from dockyard.build.cache import BuildCache
    cache = BuildCache("<data-root>/build/cache.db")     # step key -> image id; survives restarts
    image_id = await Builder(engine, cache, emit, context_dir=..., dockerfile_text=...,
                             tags=[...], build_args={...}, target=None, no_cache=False).build()

The builder runs each RUN in a real container through the engine's documented interface,
commits each filesystem step with ``ImageStore.commit`` and removes everything it made when a
build fails. ``emit`` receives Docker's legacy-builder JSON messages (``stream``, ``aux``,
``errorDetail``).
tests/build/fixtures hold cases recorded from a real Docker daemon that both are checked against.
"""

from dockyard.build.dockerfile import (
    Dockerfile, DockerfileError, Heredoc, Instruction, Mount, Stage, expand, parse,
    split_and_expand,
)

__all__ = ["Dockerfile", "DockerfileError", "Heredoc", "Instruction", "Mount", "Stage", "expand",
           "parse", "split_and_expand"]
