export default { title: 'Card' };

// A static-dir asset (served at /dots.png) and content that arrives late: the story asks
// the worker to wait for it.
export const WithImage = () => {
  const card = document.createElement('div');
  card.className = 'card';
  card.innerHTML = '<img src="dots.png" alt=""> <span class="late"></span>';
  setTimeout(() => {
    card.querySelector('.late').textContent = 'Loaded later';
  }, 300);
  return card;
};
WithImage.parameters = { happo: { waitForContent: 'Loaded later' } };

// Left out of Happo runs by the story's parameters.
export const NotInHappo = () => 'not rendered by happo';
NotInHappo.parameters = { happo: false };
