// Loader hook: redirects lib/store's `./kernels.js` import to the test wrapper.
const wrapper = new URL('./kernels-child.ts', import.meta.url).href;
export async function resolve(specifier, context, next) {
  if (specifier === './kernels.js' && context.parentURL && /\/lib\/store\/[^/]+\.ts$/.test(context.parentURL)) {
    return next(wrapper, context);
  }
  return next(specifier, context);
}
