/** The interpreter the Python tests run: Debian's, with python3-grpcio and python3-grpc-tools. */
export const PYTHON = "/usr/bin/python3";

/** What to install when PYTHON cannot import grpc / grpc_tools. */
export const INSTALL_HINT = "apt-get install -y python3-grpcio python3-grpc-tools";
