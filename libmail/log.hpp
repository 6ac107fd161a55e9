// Logging to syslog (mail facility) or stderr: one line per event, key=value,
// starting with the queue id when there is one (DESIGN §2 `log`).
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace facteur::log {

enum class Level { debug = 0, info, notice, warning, error };
enum class Target { stderr_stream, syslog };

// Called once per process. `ident` is the program name ("authd");
// a non-root daemon's lines read "facteur/authd[pid]: ...".
void init(std::string_view ident, Target target, Level minimum = Level::info);
// "syslog" | "stderr"; "debug" | "info" | ... Unknown names return false.
bool parse_target(std::string_view name, Target& out);
bool parse_level(std::string_view name, Level& out);
void set_minimum(Level minimum);
bool enabled(Level level);
void write(Level level, std::string_view line);

template <typename... Args>
void debug(fmt::format_string<Args...> format, Args&&... args) {
    if (enabled(Level::debug)) write(Level::debug, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
    if (enabled(Level::info)) write(Level::info, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void notice(fmt::format_string<Args...> format, Args&&... args) {
    if (enabled(Level::notice)) write(Level::notice, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void warning(fmt::format_string<Args...> format, Args&&... args) {
    if (enabled(Level::warning)) write(Level::warning, fmt::format(format, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> format, Args&&... args) {
    if (enabled(Level::error)) write(Level::error, fmt::format(format, std::forward<Args>(args)...));
}

// Makes a value safe to put in a log line: control characters and
// non-printable bytes become \xNN, so a hostile address cannot forge lines.
std::string printable(std::string_view value, size_t max_length = 256);

}  // namespace facteur::log
