#include <cstdio>
int main() { std::puts("zebra"); return 0; }
