# rt-actors production image: the same production install as on a server (docs/deployment.md).
#   docker build -t rt-actors .
#   docker run -p 6001:6001 -e RT_API_KEY=… -e RT_JWT_SECRET=… rt-actors start
# Debian 12 (glibc 2.36): the uWebSockets.js binary needs glibc >= 2.27, so no Alpine (musl).
FROM node:20-bookworm-slim

WORKDIR /app
ENV NODE_ENV=production
# What `npm install --omit=dev` builds from (its `prepare` script compiles TypeScript into dist/).
COPY package.json package-lock.json tsconfig.json tsconfig.runtime.json ./
COPY bin ./bin
COPY scripts ./scripts
COPY src ./src
COPY workers ./workers
COPY actors ./actors
# The dashboard's page (--dashboard), served as is.
COPY static ./static
RUN npm install --omit=dev --no-audit --no-fund && npm cache clean --force

USER node
ENV RT_PORT=6001
EXPOSE 6001
# Node itself is PID 1 (no npm, no shell in between), so SIGTERM reaches the server and drains it.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.RT_PORT || 6001) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "bin/rt-actors.js"]
CMD ["start"]
