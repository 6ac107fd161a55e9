// State shared by every `facteur` subcommand: which facteur.conf to read,
// the exit code the command chose, and the one-line error printer.
#pragma once

#include <string>
#include <string_view>

#include "libmail/config.hpp"
#include "libmail/result.hpp"

namespace facteur::cli {

// facteur(8) EXIT STATUS.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNotRunning = 3;

struct Context {
    std::string config_option;  // -c/--config as given, empty when absent
    int exit_code = kExitOk;

    // -c, else $FACTEUR_CONFIG, else the compiled-in path.
    std::string config_file() const;
    // Loads config_file(); the error names the file and line.
    Result<config::Config> load_config() const;
};

// "facteur: <message>" on stderr; returns kExitFailure for `return fail(...)`.
int fail(std::string_view message);
// A success line on stdout.
void report(std::string_view message);

}  // namespace facteur::cli
