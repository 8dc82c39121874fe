"""The `bake` command line: parses options, calls the library, prints. Nothing else prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bake import baseimage, build, catalog, goss, imagescan, packer, profiles
from bake.profiles import Provider
from fabkit import inputs, layout
from fabkit.clikit import (
    emit_json,
    exits,
    input_file,
    input_path,
    output_option,
    progress,
    verbosity_options,
)
from fabkit.errors import ExternalError, InputError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@verbosity_options
def cli() -> None:
    """Bake fabperf's golden VM images (fabric-node, caliper-worker, monitor) with Packer.

    Providers: qemu (default, local, no account), aws, openstack.
    """


@cli.command("base-image")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also place the image here (default: only build/base/debian-12-<hash>.qcow2).")
@click.option("--mirror", default=None, metavar="URL",
              help="Debian mirror for debootstrap and the image's apt sources "
                   "[default: http://deb.debian.org/debian].")
@click.option("--extra-ca", "extra_cas", multiple=True,
              type=input_file(exists=True),
              help="A PEM CA certificate to trust inside the image (repeatable). Behind a "
                   "TLS-intercepting proxy pass the proxy's CA. Default: none.")
@click.option("--force", is_flag=True, help="Rebuild even when a cached image matches.")
@click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where build outputs go [default: $FABPERF_BUILD_DIR or <repo>/build].")
@output_option
@verbosity_options
def base_image(out: Path | None, mirror: str | None, extra_cas: tuple[Path, ...], force: bool,
               build_dir: Path | None, output: str) -> None:
    """Build the local Debian 12 cloud base image (qcow2) for the qemu provider.

    Needs root. Cached by content: the same inputs return the existing image at once.
    Writes build/base/base-image.json, which the qemu bake reads.
    """

    root = layout.find_repo_root()
    build_dir = layout.build_dir(root, build_dir)
    inputs = baseimage.make_inputs(mirror, extra_cas)
    progress(f"base image: inputs {inputs.digest()[:12]} (mirror {inputs.mirror})")
    image = baseimage.build_base_image(
        base_dir=build_dir / "base", log_dir=build_dir / "logs", inputs=inputs, out=out,
        repo_root=root, force=force)
    summary = baseimage.describe(image)
    if output == "json":
        emit_json(summary)
    else:
        how = "cached" if image.cached else f"built in {image.seconds:.0f}s"
        click.echo(f"{image.path} ({how}, sha256 {image.sha256[:16]}...)")


# --- list / render / validate / build (bake.build) ------------------------------------------

_PROVIDERS = ["qemu", "aws", "openstack"]


def _provider(ctx: click.Context, param: click.Parameter, value):
    """Check --provider with fabperf's own one-line message (exit 2), not click's usage text."""

    if isinstance(value, tuple):
        return tuple(Provider.parse(v).value for v in value)
    return Provider.parse(value).value


def _target_options(f):
    """--provider, --image, --config, --var, --build-dir: what every bake command selects."""
    f = click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path),
                     default=None,
                     help="Where build outputs go "
                          "[default: $FABPERF_BUILD_DIR or <repo>/build].")(f)
    f = click.option("--set", "version_sets", multiple=True, metavar="[IMAGE.]NAME=VALUE",
                     help="Override a version pinned in images/*/image.yaml, e.g. "
                          "FABRIC_REF=v2.5.10 or monitor.GRAFANA_SOURCE=none (repeatable; "
                          "changes the fingerprint).")(f)
    f = click.option("--var", "var_texts", multiple=True, metavar="KEY=VALUE",
                     help="Override a provider profile setting (repeatable; wins over "
                          "FABPERF_<PROVIDER>_<KEY> and --config).")(f)
    f = click.option("--config", "config_file", default=None, metavar="FILE",
                     type=input_file(path_type=str),
                     envvar="FABPERF_CONFIG",
                     help="YAML profile settings: {qemu: {...}, aws: {...}, openstack: {...}}.")(f)
    f = click.option("--image", "images", multiple=True, metavar="IMAGE",
                     help="Only this image (repeatable) [default: all].")(f)
    f = click.option("--provider", default="qemu", show_default=True, callback=_provider,
                     metavar="|".join(_PROVIDERS), help="Where to bake.")(f)
    return f


def _setup(provider: str, images: tuple[str, ...], config_file: str | None,
           var_texts: tuple[str, ...], build_dir: Path | None,
           placeholder_base: bool = False,
           version_sets: tuple[str, ...] = ()):
    """Everything is checked here, before any command writes a file."""

    root = layout.find_repo_root()
    bdir = layout.build_dir(root, build_dir)
    overrides = profiles.make_overrides(config_file, var_texts)
    prov = profiles.Provider.parse(provider)
    targets = build.plan(root, bdir, prov, images, overrides, placeholder_base, version_sets)
    if targets and getattr(targets[0].profile, "base_image_checksum", "") == build.NO_BASE:
        progress("qemu: no base image yet (run `bake base-image`); templates use a placeholder "
                 "base, so fingerprints are provisional")
    return root, bdir, targets


@cli.command("list")
@click.option("--provider", "providers", multiple=True, callback=_provider,
              metavar="|".join(_PROVIDERS),
              help="Only this provider (repeatable) [default: all three].")
@click.option("--config", "config_file", default=None, metavar="FILE",
              type=input_file(path_type=str), envvar="FABPERF_CONFIG",
              help="YAML profile settings (they change fingerprints).")
@click.option("--var", "var_texts", multiple=True, metavar="KEY=VALUE",
              help="Override a provider profile setting (repeatable).")
@click.option("--set", "version_sets", multiple=True, metavar="[IMAGE.]NAME=VALUE",
              help="Override a pinned image version, as given to `bake build` (repeatable).")
@click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where build outputs go [default: $FABPERF_BUILD_DIR or <repo>/build].")
@output_option
@verbosity_options
def list_images(providers: tuple[str, ...], config_file: str | None, var_texts: tuple[str, ...],
                version_sets: tuple[str, ...], build_dir: Path | None, output: str) -> None:
    """Images, their fingerprints, and what is built per provider (from build/manifest.json)."""

    root = layout.find_repo_root()
    bdir = layout.build_dir(root, build_dir)
    specs = catalog.load_catalog(root)            # catalog errors are fatal here
    overrides = profiles.make_overrides(config_file, var_texts)
    rows: list[dict[str, Any]] = []
    for prov in providers or _PROVIDERS:
        try:
            targets = build.plan(root, bdir, profiles.Provider(prov), [], overrides,
                                 version_sets=version_sets)
        except InputError as exc:
            if "base image" not in exc.message:
                raise
            rows += [{"image": s.name, "provider": prov, "name": None, "fingerprint": None,
                      "built": False, "artifact": None, "stale": None,
                      "note": exc.message} for s in specs]
            continue
        rows += build.status(targets, bdir)
    if output == "json":
        emit_json({"images": rows})
        return
    for r in rows:
        if r["fingerprint"] is None:
            state = "no base image (run `bake base-image`)"
        elif r["built"]:
            state = "built " + ", ".join(f"{k}={v}" for k, v in sorted(r["artifact"].items()))
        else:
            state = "not built" + (f" (stale: {r['stale']})" if r["stale"] else "")
        name = r["name"] or f"fabperf-{r['image']}-?"
        click.echo(f"{r['image']:<16} {r['provider']:<10} {name:<36} {state}")


@cli.command("render")
@_target_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: <build>/packer].")
@click.option("--packer-version", default=None, metavar="X.Y.Z",
              help="Render for this Packer version [default: the installed `packer`].")
@output_option
@verbosity_options
def render_cmd(provider: str, images: tuple[str, ...], config_file: str | None,
               var_texts: tuple[str, ...], version_sets: tuple[str, ...],
               build_dir: Path | None, out: Path | None,
               packer_version: str | None, output: str) -> None:
    """Write Packer HCL2 to <out>/<image>/<provider>/<image>.pkr.hcl."""

    root, bdir, targets = _setup(provider, images, config_file, var_texts, build_dir,
                                 placeholder_base=True, version_sets=version_sets)
    version = (packer.parse_version(packer_version) if packer_version
               else build.PackerInfo().version())
    out_dir = (out or bdir / "packer").resolve()
    written = []
    for t in targets:
        path = build.render_target(t, root, bdir, out_dir, version)
        written.append({"image": t.spec.name, "provider": t.provider.value, "name": t.name,
                        "fingerprint": t.fingerprint.digest, "template": str(path)})
    if output == "json":
        emit_json({"packer_version": packer.format_version(version), "templates": written})
    else:
        for w in written:
            click.echo(w["template"])


@cli.command("validate")
@_target_options
@output_option
@verbosity_options
def validate_cmd(provider: str, images: tuple[str, ...], config_file: str | None,
                 var_texts: tuple[str, ...], version_sets: tuple[str, ...],
                 build_dir: Path | None, output: str) -> None:
    """Render and run `packer validate` (openstack: -syntax-only, full needs the cloud)."""

    root, bdir, targets = _setup(provider, images, config_file, var_texts, build_dir,
                                 placeholder_base=True, version_sets=version_sets)
    results = build.validate_targets(targets, root, bdir, build.PackerInfo(), progress)
    if output == "json":
        emit_json({"validated": results})
    else:
        for r in results:
            click.echo(f"{r['image']}/{r['provider']}: valid ({r['mode']})")


@cli.command("build")
@_target_options
@click.option("--force", is_flag=True, help="Rebuild even when the fingerprint has an artifact.")
@output_option
@verbosity_options
def build_cmd(provider: str, images: tuple[str, ...], config_file: str | None,
              var_texts: tuple[str, ...], version_sets: tuple[str, ...],
              build_dir: Path | None, force: bool, output: str) -> None:
    """Render, validate, packer build (with goss) and record in the manifest; skip unchanged."""
    from dataclasses import asdict


    root, bdir, targets = _setup(provider, images, config_file, var_texts, build_dir,
                                 version_sets=version_sets)
    outcomes = build.build_targets(targets, root, bdir, build.PackerInfo(), progress, force)
    if output == "json":
        emit_json({"builds": [asdict(o) for o in outcomes]})
    else:
        for o in outcomes:
            art = ", ".join(f"{k}={v}" for k, v in sorted(o.artifact.items()))
            click.echo(f"{o.name}: {o.action} {art}")



# --- goss specs through testinfra (bake.goss) ---------------------------------------------

@click.group("goss", context_settings={"help_option_names": ["-h", "--help"]})
@verbosity_options
def goss_cli() -> None:
    """Run goss specs without goss, through pytest-testinfra (also: python -m bake.goss)."""


@goss_cli.command("validate")
@click.option("--host", "hostspec", required=True, metavar="URL",
              help="ssh://USER@HOST:PORT, local:// or chroot:///ROOT.")
@click.option("--ssh-key", type=input_file(exists=True, max_bytes=64 * 1024, path_type=str),
              default=None,
              help="Private key for ssh:// hosts.")
@click.option("--spec", "specs", multiple=True, required=True,
              type=input_file(exists=True),
              help="A goss YAML spec (repeatable).")
@click.option("--vars-json", default="{}", metavar="JSON",
              help="goss --vars-inline: a JSON object for {{.Vars.X}}.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results as JUnit XML here.")
@output_option
@verbosity_options
def goss_validate(hostspec: str, ssh_key: str | None, specs: tuple[Path, ...], vars_json: str,
                  junit: Path | None, output: str) -> None:
    """Validate SPECs against a host; exit 1 when any check fails."""
    variables = inputs.load_json(vars_json, source="--vars-json")  # (NaN refused, bounded)
    if not isinstance(variables, dict):
        raise InputError.field(None, "--vars-json", "a JSON object", vars_json)
    results = goss.validate(hostspec, specs, variables=variables, ssh_key=ssh_key)
    if junit is not None:
        goss.write_junit(results, junit)
    failed = [r for r in results if not r.ok]
    skipped = sum(1 for r in results if r.skipped)
    if output == "json":
        emit_json({"host": hostspec, "total": len(results), "failed": len(failed),
                   "skipped": skipped, "failures": [
                       {"spec": r.spec, "check": r.title, "message": r.message} for r in failed]})
    else:
        for r in results:
            if not r.ok:
                click.echo(f"FAIL {r.title}: {r.message}")
        click.echo(f"{len(results)} checks, {len(failed)} failed, {skipped} skipped"
                   + (f"; junit {junit}" if junit else ""))
    if failed:
        raise ExternalError(f"goss: {len(failed)} of {len(results)} checks failed on {hostspec}")


cli.add_command(goss_cli)


@cli.command("imagescan")
@click.argument("target", type=input_path(exists=True))
@output_option
@verbosity_options
def imagescan_cmd(target: Path, output: str) -> None:
    """Scan a final image (qcow2, needs root) or a root filesystem dir for things that must
    never ship: private keys, SSH host keys, machine-id, cloud-init state. Exit 1 on findings.
    """

    findings = imagescan.scan(target)
    if output == "json":
        emit_json({"target": str(target), "findings": [
            {"kind": str(f.kind), "path": f.path, "detail": f.detail} for f in findings]})
    else:
        for f in findings:
            click.echo(str(f))
        click.echo(f"{target}: {len(findings)} finding(s)")
    if findings:
        raise ExternalError(f"image hygiene: {len(findings)} finding(s) in {target}")

main = exits(cli)
