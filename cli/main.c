/* main.c — the sockit command: dispatches to each command's entry point. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sockit COMMAND [ARGS]\n"
        "\n"
        "commands:\n"
        "  serve [SERVICE[=ADDR] ...]   run services (echo, upper, greet, chat, exec, files); no "
        "service: the demo set\n"
        "  connect ADDR                 talk to a server: interactive on a terminal, like nc "
        "otherwise\n"
        "  listen ADDR [-k]             wait for a peer and pipe it to stdin/stdout, like nc -l\n"
        "  relay LISTEN TARGET          relay every connection on LISTEN to TARGET (TLS either "
        "side)\n"
        "  chat ADDR [--nick NAME]      join a chat room (sockit serve chat)\n"
        "  exec ADDR -- CMD [ARG...]    run a command on a sockit exec server (--token-file F)\n"
        "  put ADDR LOCAL [REMOTE]      upload a file to a sockit files server\n"
        "  get ADDR REMOTE [LOCAL]      download a file from a sockit files server\n"
        "  ls ADDR [DIR] [--json]       list a directory of a sockit files server\n"
        "  bench ADDR                   load a server and measure it, verifying every reply\n"
        "  cert NAME [--days N]         write NAME.key and a self-signed NAME.crt for tls://\n"
        "  token FILE                   write a new random token (mode 600) for --token-file\n"
        "  version                      print the version\n"
        "\n"
        "ADDR: HOST:PORT, tcp://HOST:PORT, [IPv6]:PORT, udp://HOST:PORT, unix:PATH, unix:@NAME,\n"
        "      unixgram:PATH, tls://HOST:PORT (serve: --cert, --key; clients: --ca or --pin)\n"
        "Run 'sockit COMMAND --help' or 'sockit help COMMAND' for a command's options.\n"
        "Exit codes: 0 ok, 1 runtime failure, 2 usage error.\n");
}

const char *cli_prog = "sockit";

static int dispatch(int argc, char **argv);

int main(int argc, char **argv)
{
    cli_prog = argv[0];
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 && argc == 3 && strcmp(argv[2], "help") != 0) {
        /* `sockit help CMD` is `sockit CMD --help`, as with git and go. */
        char help_flag[] = "--help";
        char *sub[] = {argv[0], argv[2], help_flag, NULL};
        return dispatch(3, sub);
    }
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    return dispatch(argc, argv);
}

/* Runs the command named by argv[1]. */
static int dispatch(int argc, char **argv)
{
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("sockit %s\n", sk_version());
        return EXIT_OK;
    }
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "relay") == 0)
        return cmd_relay(argc - 1, argv + 1);
    if (strcmp(cmd, "connect") == 0)
        return cmd_connect(argc - 1, argv + 1);
    if (strcmp(cmd, "listen") == 0)
        return cmd_listen(argc - 1, argv + 1);
    if (strcmp(cmd, "chat") == 0)
        return cmd_chat(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "exec") == 0)
        return cmd_exec(argc - 1, argv + 1);
    if (strcmp(cmd, "put") == 0)
        return cmd_put(argc - 1, argv + 1);
    if (strcmp(cmd, "get") == 0)
        return cmd_get(argc - 1, argv + 1);
    if (strcmp(cmd, "ls") == 0)
        return cmd_ls(argc - 1, argv + 1);
    if (strcmp(cmd, "cert") == 0)
        return cmd_cert(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    cli_err("unknown command \"%s\" (try: sockit --help)", cmd);
    return EXIT_USAGE;
}
