// Splits a `|command` alias target into the argv vector deliverd hands to
// execve: no shell ever sees it (DESIGN §5 "No shell, ever").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.hpp"

namespace facteur::deliverd {

inline constexpr size_t kMaxPipeArguments = 256;

// Spaces and tabs separate words; "double" and 'single' quotes group (the
// quotes go, adjacent parts join: a"b c"d is one word "ab cd"; "" is an
// empty word). Nothing else is special: no backslash escapes, variables,
// globs, redirections or separators (`;`, `|`, `>`, `$(` are plain
// characters inside a word). Errors: empty command, unterminated quote,
// control characters, too many words, a program that is not an absolute path.
Result<std::vector<std::string>> split_command(std::string_view command);

}  // namespace facteur::deliverd
