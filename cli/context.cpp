// Where the CLI finds facteur.conf, and how it reports success and failure.
#include "cli/context.hpp"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "libmail/daemon.hpp"
#include "libmail/paths.hpp"

namespace facteur::cli {

std::string Context::config_file() const {
    if (!config_option.empty()) return config_option;
    if (const char* from_environment = std::getenv(daemon::kConfigVariable); from_environment && *from_environment)
        return from_environment;
    return paths::config_file;
}

Result<config::Config> Context::load_config() const { return config::Config::load(config_file()); }

int fail(std::string_view message) {
    fmt::print(stderr, "facteur: {}\n", message);
    return kExitFailure;
}

void report(std::string_view message) {
    fmt::print("{}\n", message);
    std::fflush(stdout);
}

}  // namespace facteur::cli
