/* registry.c — the table of services `sockit serve` knows: adding a
 * service is one line here (and its own folder). */
#include <stdio.h>
#include <string.h>

#include "services.h"

static const svc_def *const all[] = {&svc_echo, &svc_upper, &svc_greet, &svc_chat,
                                     &svc_exec, &svc_files, &svc_relay};

const svc_def *svc_find(const char *name)
{
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}

const svc_def *svc_at(size_t i) { return i < sizeof all / sizeof all[0] ? all[i] : NULL; }

const char *svc_names(void)
{
    /* Built once from the table: "echo, upper, ..." */
    static char names[200];
    if (names[0] == '\0') {
        size_t n = 0;
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", all[i]->name);
    }
    return names;
}
