/* A stand-alone `nines gameday` for t/gameday/e2e.t and t/bench/gameday.sh
 * while cli/nines_main.c has no gameday entry: `gameday_bin run|plan|lint
 * PLAYBOOK ...` is `nines gameday run|plan|lint PLAYBOOK ...`. Not a test
 * by itself (it has no .t wrapper). */
#include "gameday/gameday.h"
#include "lib/log.h"

int main(int argc, char **argv)
{
    log_init("nines", LOG_INFO);
    argv[0] = "gameday";
    return gameday_main(argc, argv);
}
