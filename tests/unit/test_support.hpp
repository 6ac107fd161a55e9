// Helpers shared by the unit tests: a temporary directory removed with its
// contents, and a bounded run of an event loop.
#pragma once

#include <stdlib.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <string>

#include "libmail/event.hpp"

namespace facteur::test {

struct TempDir {
    std::string path;
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "facteur-unit-XXXXXX").string();
        REQUIRE(mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return path + "/" + name; }
};

// Runs the loop until a test stops it; false when the safety limit hit first.
inline bool run_until_stopped(event::Loop& loop, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    bool expired = false;
    event::Timer guard(loop, [&] {
        expired = true;
        loop.stop();
    });
    guard.start(limit);
    loop.run();
    return !expired;
}

}  // namespace facteur::test
