# shellcheck shell=bash
# Sourced by mkinitramfs.sh (and tests/appliance): the shared libraries of ELF files,
# resolved from the files themselves (NEEDED, recursively), so it works the same for
# cross-built binaries.
#
# elf_libs_install ROOT ARCH ELF...: copies every library the ELF files need into
# ROOT/lib/<multiarch>/ and links the program interpreter of the first one.
# Sets ELF_LIBS (the library names, space-separated).
elf_libs_install() {
    local root=$1 arch=$2 multiarch libdirs f n p d interp
    shift 2
    case $arch in
        amd64) multiarch=x86_64-linux-gnu libdirs=(/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu) ;;
        arm64) multiarch=aarch64-linux-gnu libdirs=(/usr/aarch64-linux-gnu/lib /usr/lib/aarch64-linux-gnu /lib/aarch64-linux-gnu) ;;
        *) echo "unknown arch $arch" >&2; return 2 ;;
    esac
    local -A libs=()
    local queue=("$@")
    while [ ${#queue[@]} -gt 0 ]; do
        f=${queue[0]}
        queue=("${queue[@]:1}")
        for n in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            [ -n "${libs[$n]:-}" ] && continue
            p=""
            for d in "${libdirs[@]}"; do [ -e "$d/$n" ] && { p=$d/$n; break; }; done
            [ -n "$p" ] || { echo "elflibs: $n (needed by $f) not found in ${libdirs[*]}" >&2; return 1; }
            libs[$n]=$p
            queue+=("$p")
        done
    done
    mkdir -p "$root/lib/$multiarch"
    for n in "${!libs[@]}"; do cp -L "${libs[$n]}" "$root/lib/$multiarch/$n"; done
    interp=$(readelf -l "$1" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
    [ -n "${libs[$(basename "$interp")]:-}" ] || { echo "elflibs: interpreter $interp not among the libraries" >&2; return 1; }
    mkdir -p "$root$(dirname "$interp")"
    [ -e "$root$interp" ] || ln -s "/lib/$multiarch/$(basename "$interp")" "$root$interp"
    ELF_LIBS="${!libs[*]}"
}
