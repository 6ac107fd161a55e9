// Logging implementation: syslog(3) or timestamped lines on stderr.
#include "libmail/log.hpp"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "libmail/panic.hpp"

namespace facteur::log {
namespace {

std::string g_ident = "facteur";
Target g_target = Target::stderr_stream;
std::atomic<int> g_minimum{static_cast<int>(Level::info)};
std::mutex g_mutex;

const char* level_name(Level level) {
    switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::notice: return "notice";
    case Level::warning: return "warning";
    case Level::error: return "error";
    }
    return "info";
}

int syslog_priority(Level level) {
    switch (level) {
    case Level::debug: return LOG_DEBUG;
    case Level::info: return LOG_INFO;
    case Level::notice: return LOG_NOTICE;
    case Level::warning: return LOG_WARNING;
    case Level::error: return LOG_ERR;
    }
    return LOG_INFO;
}

}  // namespace

void init(std::string_view ident, Target target, Level minimum) {
    std::lock_guard lock(g_mutex);
    g_ident = "facteur/" + std::string(ident);
    g_target = target;
    g_minimum = static_cast<int>(minimum);
    if (target == Target::syslog) openlog(g_ident.c_str(), LOG_PID | LOG_NDELAY, LOG_MAIL);
}

bool parse_target(std::string_view name, Target& out) {
    if (name == "syslog") out = Target::syslog;
    else if (name == "stderr") out = Target::stderr_stream;
    else return false;
    return true;
}

bool parse_level(std::string_view name, Level& out) {
    for (Level level : {Level::debug, Level::info, Level::notice, Level::warning, Level::error}) {
        if (name == level_name(level)) {
            out = level;
            return true;
        }
    }
    return false;
}

void set_minimum(Level minimum) { g_minimum = static_cast<int>(minimum); }

bool enabled(Level level) { return static_cast<int>(level) >= g_minimum.load(); }

void write(Level level, std::string_view line) {
    std::lock_guard lock(g_mutex);
    if (g_target == Target::syslog) {
        if (level == Level::info) {
            syslog(syslog_priority(level), "%.*s", static_cast<int>(line.size()), line.data());
        } else {
            syslog(syslog_priority(level), "%s: %.*s", level_name(level), static_cast<int>(line.size()),
                   line.data());
        }
        return;
    }
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    tm local{};
    localtime_r(&now.tv_sec, &local);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &local);
    std::string out = fmt::format("{}.{:03d} {}[{}]: ", stamp, static_cast<int>(now.tv_nsec / 1000000), g_ident,
                                  static_cast<int>(getpid()));
    if (level != Level::info) {
        out += level_name(level);
        out += ": ";
    }
    out.append(line);
    out += '\n';
    // One write(2) per line so lines from several processes never interleave.
    ssize_t ignored = ::write(STDERR_FILENO, out.data(), out.size());
    (void)ignored;
}

std::string printable(std::string_view value, size_t max_length) {
    std::string out;
    out.reserve(value.size() < max_length ? value.size() : max_length);
    for (unsigned char c : value) {
        if (out.size() >= max_length) {
            out += "...";
            break;
        }
        if (c < 0x20 || c == 0x7f || c == '\\') out += fmt::format("\\x{:02x}", c);
        else out += static_cast<char>(c);
    }
    return out;
}

}  // namespace facteur::log

namespace facteur {

[[noreturn]] void panic(std::string_view why) {
    log::write(log::Level::error, fmt::format("panic: {}", why));
    std::abort();
}

}  // namespace facteur
