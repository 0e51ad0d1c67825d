# Source me: environment shared by the test and demo commands.
major=$(cut -d. -f1 /etc/debian_version 2>/dev/null || echo 13)
if [ "$major" = "12" ]; then
    export QATZIP_LIBDIR=${QATZIP_LIBDIR:-/opt/nova-qat-migration/qatzip/usr/lib/x86_64-linux-gnu}
    export LD_LIBRARY_PATH=$QATZIP_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
export OS_STDOUT_CAPTURE=1 OS_STDERR_CAPTURE=1 OS_TEST_TIMEOUT=${OS_TEST_TIMEOUT:-160}
export PYTHONDONTWRITEBYTECODE=1
