/* Moved to fault/inventory.h; this forward lets the lab's files
 * (chaos/lab.h) build until their includes are rewritten at the merge, then
 * it goes. */
#include "fault/inventory.h"
