// happo 6.13 needs this import: it defines window.happo.init / window.happo.nextExample in the
// preview iframe (the Happo worker drives the stories through them). The preset
// `happo/storybook/preset` / `happo/storybook/decorator` are optional and need React, so this
// html Storybook does without them.
import 'happo/storybook/register';
import './preview.css';

export default {
  parameters: { layout: 'padded' },
};
