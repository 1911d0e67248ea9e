/*
 * pause: the process that holds a pod's namespaces (the "sandbox" or "infra" container), like
 * Kubernetes' build/pause/linux/pause.c. It sleeps until SIGINT or SIGTERM and reaps the
 * children that a shared PID namespace hands to it as PID 1.
 *
 * Built static (gcc -static -Os) so that its image is this one file: hack/image and the `pause`
 * target of docker/Dockerfile compile this same source.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "k8s-scheduler"
#endif

static void on_stop(int signo) {
  /* Async-signal-safe: no stdio here. */
  static const char msg[] = "pause: shutting down\n";
  (void)signo;
  (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
  _exit(0);
}

static void on_child(int signo) {
  (void)signo;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
    printf("pause %s\n", VERSION);
    return 0;
  }
  if (getpid() != 1) {
    /* Still useful (e.g. in tests), but children of other processes are not ours to reap. */
    fprintf(stderr, "pause: warning: not running as PID 1\n");
  }

  struct sigaction stop = {0};
  stop.sa_handler = on_stop;
  sigemptyset(&stop.sa_mask);
  if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0) {
    perror("pause: sigaction SIGINT/SIGTERM");
    return 1;
  }
  struct sigaction child = {0};
  child.sa_handler = on_child;
  sigemptyset(&child.sa_mask);
  child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  if (sigaction(SIGCHLD, &child, NULL) < 0) {
    perror("pause: sigaction SIGCHLD");
    return 1;
  }

  for (;;) {
    pause();
  }
  /* Not reached. */
  return 42;
}
