// The subcommand groups of `facteur`, one file each; main.cpp wires them.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/context.hpp"

namespace facteur::cli {

void register_service_commands(CLI::App& app, Context& context);  // start stop reload status
void register_domain_commands(CLI::App& app, Context& context);
void register_user_commands(CLI::App& app, Context& context);
void register_alias_commands(CLI::App& app, Context& context);
void register_config_commands(CLI::App& app, Context& context);
void register_queue_commands(CLI::App& app, Context& context);  // list show flush hold release delete requeue

}  // namespace facteur::cli
