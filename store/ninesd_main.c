#include <stdio.h>
int main(void)
{
    fprintf(stderr, "ninesd: not built yet\n");
    return 2;
}
