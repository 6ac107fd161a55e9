// panic(): a broken invariant. Logs one line and aborts (CONVENTIONS tier 1).
#pragma once

#include <string_view>

namespace facteur {

[[noreturn]] void panic(std::string_view why);

}  // namespace facteur
