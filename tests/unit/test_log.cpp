// Unit tests for libmail/log: level and target names, and the escaping that
// keeps hostile bytes (CR, LF, NUL) from forging log lines.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <string>

#include "libmail/log.hpp"

using namespace facteur;

TEST_CASE("level and target names") {
    log::Level level{};
    CHECK(log::parse_level("debug", level));
    CHECK(level == log::Level::debug);
    CHECK(log::parse_level("error", level));
    CHECK(level == log::Level::error);
    CHECK_FALSE(log::parse_level("loud", level));
    log::Target target{};
    CHECK(log::parse_target("stderr", target));
    CHECK(target == log::Target::stderr_stream);
    CHECK(log::parse_target("syslog", target));
    CHECK_FALSE(log::parse_target("file", target));
}

TEST_CASE("printable escapes control bytes and bounds the length") {
    CHECK(log::printable("bob@example.test") == "bob@example.test");
    CHECK(log::printable("a\r\nb") == "a\\x0d\\x0ab");
    CHECK(log::printable(std::string("a\0b", 3)) == "a\\x00b");
    CHECK(log::printable("back\\slash") == "back\\x5cslash");
    CHECK(log::printable("\x7f") == "\\x7f");
    std::string long_value(1000, 'x');
    std::string shown = log::printable(long_value, 10);
    CHECK(shown == std::string(10, 'x') + "...");
}

TEST_CASE("stderr lines carry the program name and one line per event") {
    int pipe_fds[2];
    REQUIRE(pipe(pipe_fds) == 0);
    int saved = dup(STDERR_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    log::init("unit", log::Target::stderr_stream, log::Level::info);
    log::debug("hidden {}", 1);
    log::info("4F2A9C01: to=<{}>, status=sent", "bob@example.test");
    log::warning("careful");
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(pipe_fds[1]);
    std::string out;
    char buffer[4096];
    ssize_t n;
    while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0) out.append(buffer, static_cast<size_t>(n));
    close(pipe_fds[0]);
    CHECK(out.find("hidden") == std::string::npos);
    CHECK(out.find("facteur/unit[") != std::string::npos);
    CHECK(out.find("]: 4F2A9C01: to=<bob@example.test>, status=sent\n") != std::string::npos);
    CHECK(out.find("]: warning: careful\n") != std::string::npos);
}
