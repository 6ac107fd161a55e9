// master: the supervisor of a facteur instance. Wiring only: options,
// configuration, instance preparation, sockets, signals, the loop.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "libmail/config.hpp"
#include "libmail/daemon.hpp"
#include "libmail/event.hpp"
#include "libmail/log.hpp"
#include "libmail/paths.hpp"
#include "libmail/system.hpp"
#include "master/control.hpp"
#include "master/instance.hpp"
#include "master/supervisor.hpp"

using namespace facteur;

namespace {

// With --daemon, the parent waits on this pipe until the child reports
// "ready" or an error, so `facteur start` can tell the admin what happened.
int g_ready_fd = -1;

[[noreturn]] void fail(const std::string& message) {
    log::error("{}", message);
    std::fprintf(stderr, "master: %s\n", message.c_str());
    if (g_ready_fd >= 0) {
        std::string line = message + "\n";
        ssize_t ignored = write(g_ready_fd, line.data(), line.size());
        (void)ignored;
    }
    std::exit(1);
}

void daemonize() {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) fail(fmt::format("pipe: {}", std::strerror(errno)));
    pid_t pid = fork();
    if (pid < 0) fail(fmt::format("fork: {}", std::strerror(errno)));
    if (pid > 0) {
        close(pipe_fds[1]);
        std::string message;
        char buffer[512];
        ssize_t n;
        while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0) message.append(buffer, static_cast<size_t>(n));
        if (message == "ready\n") std::_Exit(0);
        if (message.empty()) message = "master exited during start-up\n";
        std::fprintf(stderr, "master: %s", message.c_str());
        std::_Exit(1);
    }
    close(pipe_fds[0]);
    g_ready_fd = pipe_fds[1];
    setsid();
    if (chdir("/") != 0) fail("chdir /");
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
        dup2(null_fd, STDIN_FILENO);
        dup2(null_fd, STDOUT_FILENO);
        if (null_fd > STDERR_FILENO) close(null_fd);
    }
}

void usage() {
    std::printf(
        "usage: master [-c config-file] [--daemon]\n"
        "Starts and supervises the facteur daemons (see master(8)).\n"
        "  -c, --config FILE  configuration (default %s)\n"
        "  -d, --daemon       detach; exit once every service is started\n",
        paths::config_file);
}

}  // namespace

int main(int argc, char** argv) {
    log::init("master", log::Target::stderr_stream);
    std::string config_path = paths::config_file;
    if (const char* from_environment = std::getenv(daemon::kConfigVariable)) config_path = from_environment;
    bool detach = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view argument(argv[i]);
        if ((argument == "-c" || argument == "--config") && i + 1 < argc) config_path = argv[++i];
        else if (argument == "-d" || argument == "--daemon") detach = true;
        else if (argument == "-h" || argument == "--help") {
            usage();
            return 0;
        } else if (argument == "--version") {
            std::printf("facteur master %s\n", paths::version);
            return 0;
        } else {
            std::fprintf(stderr, "master: unknown argument '%s'\n", argv[i]);
            usage();
            return 2;
        }
    }
    // Children get an absolute path: they run with another working directory.
    if (!config_path.empty() && config_path.front() != '/') {
        char cwd[4096];
        if (getcwd(cwd, sizeof cwd) != nullptr) config_path = std::string(cwd) + "/" + config_path;
    }

    auto loaded = config::Config::load(config_path);
    if (!loaded) fail(loaded.error());
    config::Config config = std::move(loaded).value();
    daemon::init_logging("master", config);
    if (detach) daemonize();
    signal(SIGPIPE, SIG_IGN);

    if (Status s = master::prepare_directories(config); !s) fail(s.error());
    auto pid_lock = master::lock_pid_file(config);
    if (!pid_lock) fail(pid_lock.error());
    if (Status s = master::check_tls(config); !s) fail(s.error());
    if (Status s = master::check_services(config); !s) fail(s.error());

    facteur::event::Loop loop;
    master::Supervisor supervisor(loop, config);
    if (Status s = supervisor.prepare(); !s) fail(s.error());

    std::string control_path = config.path("master_control_socket");
    auto control_socket = facteur::event::listen_unix(control_path, 0600);
    if (!control_socket) fail(fmt::format("cannot listen on {}: {}", control_path, control_socket.error()));

    auto begin_stop = [&] {
        if (supervisor.stopping()) return;
        log::info("master stopping");
        supervisor.stop([&] { loop.stop(); });
    };
    auto reload = [&]() -> Status {
        auto fresh = config::Config::load(config_path);
        if (!fresh) {
            log::error("reload refused, keeping the running configuration: {}", fresh.error());
            return make_error(fresh.error());
        }
        daemon::init_logging("master", *fresh);
        if (Status checked = master::check_services(*fresh); !checked) {
            log::error("reload refused, keeping the running configuration: {}", checked.error());
            return checked;
        }
        Status status = supervisor.reload(*fresh);
        if (!status) log::error("reload: {}", status.error());
        else log::info("configuration reloaded from {}", config_path);
        return status;
    };
    master::ControlServer control(loop, std::move(control_socket).value(), supervisor, begin_stop, reload);

    facteur::event::Signal on_child(loop, SIGCHLD, [&] { supervisor.reap(); });
    facteur::event::Signal on_term(loop, SIGTERM, begin_stop);
    facteur::event::Signal on_int(loop, SIGINT, begin_stop);
    facteur::event::Signal on_hup(loop, SIGHUP, [&] { (void)reload(); });

    supervisor.start_all();
    log::info("master pid={} started (facteur {}), config={}", getpid(), paths::version, config_path);
    if (g_ready_fd >= 0) {
        ssize_t ignored = write(g_ready_fd, "ready\n", 6);
        (void)ignored;
        close(g_ready_fd);
        g_ready_fd = -1;
    }

    loop.run();

    unlink(control_path.c_str());
    unlink((config.path("runtime_dir") + "/master.pid").c_str());
    log::info("master stopped");
    return 0;
}
