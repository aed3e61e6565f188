/* relay_hex.c — the relay's --hex and --hex-file: a tap on every relayed
 * chunk (relay_set_tap) writing the dump format of connect and listen.
 * Pairs live on several worker threads, so each chunk goes out whole under
 * the dump's lock, after a "# conn N ..." line naming its pair; offsets are
 * per pair and direction ('>' client to target, '<' target to client). */
#include <stdio.h>

#include "../services/relay/relay.h"
#include "cli.h"
#include "hexdump.h"

static cli_hexdump *g_dump;

static void tap(const relay_tap_chunk *c, const uint8_t *data, size_t len, void *ud)
{
    char label[700];
    bool up = c->dir == RELAY_UP;
    snprintf(label, sizeof label, "conn %llu %s %s -> %s (%zu bytes)", (unsigned long long)c->id,
             up ? "up" : "down", up ? c->client : c->target, up ? c->target : c->client, len);
    cli_hexdump_chunk(ud, up ? CLI_HEX_OUT : CLI_HEX_IN, c->off, label, data, len);
}

int cli_relay_hex_start(void)
{
    if (!relay_cli_opts.hex && relay_cli_opts.hex_file == NULL)
        return 0;
    if (cli_hexdump_open(relay_cli_opts.hex_file, &g_dump) < 0)
        return -1;
    relay_set_tap(tap, g_dump);
    return 0;
}

void cli_relay_hex_stop(void)
{
    relay_set_tap(NULL, NULL);
    cli_hexdump_close(g_dump);
    g_dump = NULL;
}
