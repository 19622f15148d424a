// The header compiles as C++ and its functions link with C linkage.
#include "consenso.h"

#include <cstdio>
#include <cstring>

int main() {
    consenso_balancer *b = nullptr;
    if (consenso_balancer_new(CONSENSO_POLICY_ROUND_ROBIN, nullptr, &b) != CONSENSO_RESULT_OK) return 1;
    consenso_balancer_free(b);
    std::printf("C++: consenso %s\n", consenso_version());
    return std::strcmp(consenso_version(), CONSENSO_VERSION) == 0 ? 0 : 1;
}
