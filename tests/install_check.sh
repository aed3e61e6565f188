#!/bin/sh
# install_check.sh — `make install` into a scratch prefix, then build and run a
# program against it through pkg-config, as a user of the library would.
set -eu
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
make -s install PREFIX="$prefix" >/dev/null
for f in bin/sockit include/sockit.h lib/libsockit.a lib/libsockit.so lib/pkgconfig/sockit.pc \
         share/man/man1/sockit.1; do
    [ -e "$prefix/$f" ] || { echo "install_check: $f was not installed"; exit 1; }
done
cat > "$prefix/use.c" <<'C'
#include <sockit.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    sk_addr a;
    char err[200];
    if (sk_addr_parse("[::1]:8080", &a, err, sizeof err) != 0 || strcmp(a.host, "::1") != 0 || a.port != 8080)
        return 1;
    puts(SK_VERSION);
    return 0;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc "$prefix/use.c" $(pkg-config --cflags sockit) -o "$prefix/use" $(pkg-config --libs sockit)
out=$(LD_LIBRARY_PATH="$prefix/lib" "$prefix/use")
[ "$out" = "$(pkg-config --modversion sockit)" ] || { echo "install_check: version mismatch: $out"; exit 1; }
"$prefix/bin/sockit" version | grep -q "^sockit $out\$" || { echo "install_check: installed sockit version"; exit 1; }
echo "install_check: install, pkg-config and the shared library work (sockit $out)"
