/* feedline CLI (placeholder until the commands land). */
#include <stdio.h>

int main(void) {
    puts("feedline");
    return 0;
}
