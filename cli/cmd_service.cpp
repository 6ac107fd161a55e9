// `facteur start|stop|reload|status`: the instance as a whole, through
// master's control socket (libmail/master_control.hpp).
#include <fcntl.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "cli/format.hpp"
#include "libmail/master_control.hpp"
#include "libmail/system.hpp"
#include "libmail/unique_fd.hpp"

extern char** environ;

namespace facteur::cli {
namespace {

using namespace std::chrono_literals;

enum class Probe { answers, absent, unreachable };

struct ProbeResult {
    Probe state;
    std::string reason;  // for unreachable
};

// Does something accept connections on master's control socket? A missing
// file or a refused connection means master is not running; anything else
// (permission denied, a path too long) is a problem the admin must see.
ProbeResult probe_control_socket(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path)
        return {Probe::unreachable, fmt::format("socket path too long: {}", path)};
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return {Probe::unreachable, fmt::format("socket: {}", system::errno_text(errno))};
    int rc;
    do {
        rc = connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) return {Probe::answers, {}};
    if (errno == ENOENT || errno == ECONNREFUSED || errno == ENOTDIR) return {Probe::absent, {}};
    return {Probe::unreachable, fmt::format("cannot connect to {}: {}", path, system::errno_text(errno))};
}

// master holds an exclusive flock on its pid file for as long as it lives,
// so a free lock means the process is really gone, not just its socket.
bool pid_file_locked(const std::string& runtime_dir) {
    std::string path = runtime_dir + "/master.pid";
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return false;
    if (flock(fd.get(), LOCK_SH | LOCK_NB) == 0) {
        flock(fd.get(), LOCK_UN);
        return false;
    }
    return errno == EWOULDBLOCK;
}

// Runs `argv` and waits for it; master --daemon exits once it is ready.
Result<int> run_and_wait(const std::vector<std::string>& argv) {
    std::vector<char*> pointers;
    for (const std::string& argument : argv) pointers.push_back(const_cast<char*>(argument.c_str()));
    pointers.push_back(nullptr);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, argv.front().c_str(), nullptr, nullptr, pointers.data(), environ);
    if (rc != 0) return make_error(fmt::format("cannot run {}: {}", argv.front(), system::errno_text(rc)));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return make_error(fmt::format("waitpid: {}", system::errno_text(errno)));
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return make_error(fmt::format("{} was killed by signal {}", argv.front(), WTERMSIG(status)));
}

std::string absolute(const std::string& path) {
    if (path.empty() || path.front() == '/') return path;
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) == nullptr) return path;
    return std::string(cwd) + "/" + path;
}

int start(const Context& context) {
    auto config = context.load_config();
    if (!config) return fail(config.error());
    auto probe = probe_control_socket(config->path("master_control_socket"));
    if (probe.state == Probe::answers) return fail("facteur is already running");
    if (probe.state == Probe::unreachable) return fail(probe.reason);
    std::string master = config->path("daemon_directory") + "/master";
    if (access(master.c_str(), X_OK) != 0)
        return fail(fmt::format("cannot run {}: {}", master, system::errno_text(errno)));
    auto exit_status = run_and_wait({master, "-c", absolute(context.config_file()), "--daemon"});
    if (!exit_status) return fail(exit_status.error());
    // On failure master already said why on stderr.
    if (*exit_status != 0) return fail("facteur did not start");
    report("facteur started");
    return kExitOk;
}

// Sends `command` to the running master; the error says why it could not.
Status send_command(const config::Config& config, std::string_view command) {
    std::string socket = config.path("master_control_socket");
    auto probe = probe_control_socket(socket);
    if (probe.state == Probe::absent) return make_error("facteur is not running");
    if (probe.state == Probe::unreachable) return make_error(probe.reason);
    auto reply = master_control::call(socket, command);
    if (!reply) return make_error(fmt::format("{}: {}", command, reply.error()));
    if (Status status = ipc::reply_status(*reply, "master"); !status)
        return make_error(fmt::format("{} refused: {}", command, status.error()));
    return {};
}

int stop(const Context& context) {
    auto config = context.load_config();
    if (!config) return fail(config.error());
    if (Status sent = send_command(*config, "stop"); !sent) return fail(sent.error());
    std::string socket = config->path("master_control_socket");

    // master gives its services service_stop_timeout to exit, then kills
    // them; wait a little longer than that for master itself.
    auto limit = config->duration("", "service_stop_timeout") + 5s;
    auto deadline = std::chrono::steady_clock::now() + limit;
    std::string runtime_dir = config->path("runtime_dir");
    while (std::chrono::steady_clock::now() < deadline) {
        if (probe_control_socket(socket).state != Probe::answers && !pid_file_locked(runtime_dir)) {
            report("facteur stopped");
            return kExitOk;
        }
        std::this_thread::sleep_for(100ms);
    }
    return fail(fmt::format("master has not stopped after {} seconds",
                            std::chrono::duration_cast<std::chrono::seconds>(limit).count()));
}

int reload(const Context& context) {
    auto config = context.load_config();
    if (!config) return fail(config.error());
    if (Status sent = send_command(*config, "reload"); !sent) return fail(sent.error());
    report("facteur reloaded");
    return kExitOk;
}

int status(const Context& context) {
    auto config = context.load_config();
    if (!config) return fail(config.error());
    std::string socket = config->path("master_control_socket");
    auto probe = probe_control_socket(socket);
    if (probe.state == Probe::unreachable) {
        fail(probe.reason);
        return kExitNotRunning;
    }
    if (probe.state == Probe::absent) {
        fmt::print(stderr, "facteur is not running\n");
        return kExitNotRunning;
    }
    auto reply = master_control::call(socket, "status");
    if (!reply) {
        // It went away between the probe and the call.
        fmt::print(stderr, "facteur is not running ({})\n", reply.error());
        return kExitNotRunning;
    }
    auto rows = master_control::decode_status(*reply);
    if (!rows) return fail(fmt::format("status: {}", rows.error()));
    std::vector<std::vector<std::string>> table{{"SERVICE", "PID", "STATE", "UPTIME", "RESTARTS"}};
    for (const auto& row : *rows) {
        bool alive = row.pid > 0;
        table.push_back({row.service, alive ? std::to_string(row.pid) : "-", row.state,
                         alive ? format_uptime(row.uptime_seconds) : "-", std::to_string(row.restarts)});
    }
    fmt::print("{}", format_table(table));
    return kExitOk;
}

}  // namespace

void register_service_commands(CLI::App& app, Context& context) {
    app.add_subcommand("start", "Start master, which starts every service")->callback([&context] {
        context.exit_code = start(context);
    });
    app.add_subcommand("stop", "Stop every service and master, and wait until they are gone")->callback([&context] {
        context.exit_code = stop(context);
    });
    app.add_subcommand("reload", "Make master re-read facteur.conf and apply it to its services")
        ->callback([&context] { context.exit_code = reload(context); });
    app.add_subcommand("status", "Show each service's pid, state, uptime and restarts (exit 3 if not running)")
        ->callback([&context] { context.exit_code = status(context); });
}

}  // namespace facteur::cli
